package fat

// extent is a run of consecutive clusters.
type extent struct {
	first uint32
	count uint32
}

// chain follows the cluster chain from start for at most limit clusters and
// returns it as extents. It stops at end of chain; anything else that ends the
// chain early (a free, bad or out-of-range entry) is corruption. A loop simply
// runs into limit, so the walk is always bounded.
func (t *table) chain(start uint32, limit uint32) ([]extent, uint32, error) {
	if !t.isPointer(start) {
		return nil, 0, corruptf("cluster chain starts at invalid cluster %d", start)
	}
	var out []extent
	var n uint32
	c := start
	for {
		if n >= limit {
			return out, n, nil
		}
		if len(out) > 0 && out[len(out)-1].first+out[len(out)-1].count == c {
			out[len(out)-1].count++
		} else {
			out = append(out, extent{c, 1})
		}
		n++
		if t.onCycle(c) {
			return out, n, corruptf("cluster chain through cluster %d loops", c)
		}
		v := t.get(c)
		switch {
		case t.isEOC(v):
			return out, n, nil
		case t.isPointer(v) && t.get(v) != 0:
			c = v
		default:
			return out, n, corruptf("cluster chain broken at cluster %d (entry 0x%x)", c, v)
		}
	}
}

// clusterList is chain as a flat list of clusters.
func (t *table) clusterList(start uint32, limit uint32) ([]uint32, error) {
	ext, n, err := t.chain(start, limit)
	if err != nil {
		return nil, err
	}
	out := make([]uint32, 0, n)
	for _, e := range ext {
		for i := uint32(0); i < e.count; i++ {
			out = append(out, e.first+i)
		}
	}
	return out, nil
}

// freeChain releases every cluster of the chain from start. The FAT has
// been checked (analyze), so the chain ends; the walk is bounded anyway.
func (t *table) freeChain(start uint32) error {
	if start == 0 {
		return nil
	}
	if !t.isPointer(start) || !t.isHead(start) {
		// An entry pointing into the middle of another chain: freeing
		// from here would cut that file short.
		return corruptf("entry's first cluster %d is part of another cluster chain", start)
	}
	list, err := t.clusterList(start, t.last)
	if err != nil {
		return err
	}
	if v := t.get(list[len(list)-1]); !t.isEOC(v) {
		return corruptf("cluster chain from %d does not end", start)
	}
	for _, c := range list {
		t.set(c, 0)
	}
	return nil
}

// analyze checks the whole FAT once. It returns the first inconsistency
// that makes changing the filesystem unsafe (an entry that is not free, bad,
// end of chain or a pointer to an allocated cluster; a cluster pointed to
// twice, i.e. cross-linked chains; a chain that loops) and marks every
// cluster that lies on a loop, so that reads can refuse such chains instead
// of returning repeated data. go-diskfs follows chains without any bound;
// the write path relies on this check to keep it from looping.
func (t *table) analyze() (problem error) {
	n := t.last + 1
	t.cyclic = nil
	note := func(err error) {
		if problem == nil {
			problem = err
		}
	}
	pointed := make([]uint64, (n+63)/64)
	t.pointed = pointed
	for c := uint32(2); c <= t.last; c++ {
		v := t.get(c)
		switch {
		case v == 0, v == t.badMarker(), t.isEOC(v):
		case t.isPointer(v):
			if t.get(v) == 0 {
				note(corruptf("cluster %d points to free cluster %d", c, v))
			}
			if pointed[v/64]&(1<<(v%64)) != 0 {
				note(corruptf("cluster %d is in two chains (cross-linked)", v))
			}
			pointed[v/64] |= 1 << (v % 64)
		default:
			note(corruptf("cluster %d has invalid FAT entry 0x%x", c, v))
		}
	}
	// Colour the functional graph c -> FAT[c]: 1 on the current path,
	// 2 finished. Reaching a cluster on the current path closes a loop.
	state := make([]byte, n)
	var path []uint32
	for c := uint32(2); c <= t.last; c++ {
		path = path[:0]
		x := c
		for x >= 2 && x <= t.last && state[x] == 0 && t.isPointer(t.get(x)) {
			state[x] = 1
			path = append(path, x)
			x = t.get(x)
		}
		if x >= 2 && x <= t.last && state[x] == 1 {
			note(corruptf("cluster chain through cluster %d loops", x))
			if t.cyclic == nil {
				t.cyclic = make([]uint64, (n+63)/64)
			}
			for i := len(path) - 1; i >= 0; i-- {
				t.cyclic[path[i]/64] |= 1 << (path[i] % 64)
				if path[i] == x {
					break
				}
			}
		}
		for _, p := range path {
			state[p] = 2
		}
	}
	return problem
}

func (t *table) onCycle(c uint32) bool {
	return t.cyclic != nil && t.cyclic[c/64]&(1<<(c%64)) != 0
}
