package overlay

import (
	"container/list"
	"sync"
)

// refCache is a small LRU of open objects (files) shared by concurrent
// users: an evicted object is closed only when its last user releases it.
type refCache[T any] struct {
	mu  sync.Mutex
	max int
	ll  *list.List
	m   map[uint64]*list.Element
}

type refItem[T any] struct {
	key     uint64
	val     T
	refs    int
	evicted bool
	close   func(T)
}

func newRefCache[T any](max int) *refCache[T] {
	return &refCache[T]{max: max, ll: list.New(), m: map[uint64]*list.Element{}}
}

func (c *refCache[T]) releaser(it *refItem[T]) func() {
	var once sync.Once
	return func() {
		once.Do(func() {
			c.mu.Lock()
			it.refs--
			closeNow := it.refs == 0 && it.evicted
			c.mu.Unlock()
			if closeNow {
				it.close(it.val)
			}
		})
	}
}

// get returns the cached object for key, holding a reference.
func (c *refCache[T]) get(key uint64) (T, func(), bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.m[key]
	if !ok {
		var zero T
		return zero, nil, false
	}
	c.ll.MoveToFront(el)
	it := el.Value.(*refItem[T])
	it.refs++
	return it.val, c.releaser(it), true
}

// put caches val under key (or, if another caller won the race, closes val
// and returns the cached one), holding a reference.
func (c *refCache[T]) put(key uint64, val T, closeFn func(T)) (T, func()) {
	c.mu.Lock()
	if el, ok := c.m[key]; ok {
		c.ll.MoveToFront(el)
		it := el.Value.(*refItem[T])
		it.refs++
		c.mu.Unlock()
		closeFn(val)
		return it.val, c.releaser(it)
	}
	it := &refItem[T]{key: key, val: val, refs: 1, close: closeFn}
	c.m[key] = c.ll.PushFront(it)
	var victims []*refItem[T]
	for c.ll.Len() > c.max {
		el := c.ll.Back()
		old := el.Value.(*refItem[T])
		c.ll.Remove(el)
		delete(c.m, old.key)
		old.evicted = true
		if old.refs == 0 {
			victims = append(victims, old)
		}
	}
	c.mu.Unlock()
	for _, v := range victims {
		v.close(v.val)
	}
	return val, c.releaser(it)
}

// remove drops key; it is closed once unused.
func (c *refCache[T]) remove(key uint64) {
	c.mu.Lock()
	el, ok := c.m[key]
	if !ok {
		c.mu.Unlock()
		return
	}
	it := el.Value.(*refItem[T])
	c.ll.Remove(el)
	delete(c.m, key)
	it.evicted = true
	closeNow := it.refs == 0
	c.mu.Unlock()
	if closeNow {
		it.close(it.val)
	}
}

// each calls fn for every cached object (under the cache lock).
func (c *refCache[T]) each(fn func(key uint64, val T)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, el := range c.m {
		fn(k, el.Value.(*refItem[T]).val)
	}
}

// closeAll drops everything; objects in use are closed on release.
func (c *refCache[T]) closeAll(_ func(T)) {
	c.mu.Lock()
	var victims []*refItem[T]
	for k, el := range c.m {
		it := el.Value.(*refItem[T])
		it.evicted = true
		if it.refs == 0 {
			victims = append(victims, it)
		}
		delete(c.m, k)
	}
	c.ll.Init()
	c.mu.Unlock()
	for _, v := range victims {
		v.close(v.val)
	}
}
