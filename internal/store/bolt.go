package store

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"time"

	bolt "go.etcd.io/bbolt"
)

// DefaultEventRetention is how many events are kept per machine.
const DefaultEventRetention = 1000

var (
	bucketMeta     = []byte("meta")
	bucketImages   = []byte("images")
	bucketMachines = []byte("machines")
	bucketTokens   = []byte("tokens")
	bucketTokHash  = []byte("token_hashes")
	bucketEvents   = []byte("events")
	keySchema      = []byte("schema_version")
)

// Bolt is the bbolt-backed Store.
type Bolt struct {
	db        *bolt.DB
	retention uint64
}

// Options configure Open.
type Options struct {
	// EventRetention is the number of events kept per machine; default 1000.
	EventRetention int
}

// Open opens or creates the database file.
func Open(path string, opts Options) (*Bolt, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("open state database %s: %w (is another bakery serve using it?)", path, err)
	}
	b := &Bolt{db: db, retention: DefaultEventRetention}
	if opts.EventRetention > 0 {
		b.retention = uint64(opts.EventRetention)
	}
	if err := db.Update(b.migrate); err != nil {
		db.Close()
		return nil, fmt.Errorf("state database %s: %w", path, err)
	}
	return b, nil
}

func (b *Bolt) migrate(tx *bolt.Tx) error {
	meta, err := tx.CreateBucketIfNotExists(bucketMeta)
	if err != nil {
		return err
	}
	version := 0
	if v := meta.Get(keySchema); v != nil {
		if version, err = strconv.Atoi(string(v)); err != nil {
			return fmt.Errorf("schema version %q is not a number", v)
		}
	}
	if version > SchemaVersion {
		return fmt.Errorf("schema version %d was written by a newer bakery (this one knows %d)", version, SchemaVersion)
	}
	for _, name := range [][]byte{bucketImages, bucketMachines, bucketTokens, bucketTokHash, bucketEvents} {
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return err
		}
	}
	// Migrations from older versions go here, one step per version.
	return meta.Put(keySchema, []byte(strconv.Itoa(SchemaVersion)))
}

// Close closes the database.
func (b *Bolt) Close() error { return b.db.Close() }

func get[T any](tx *bolt.Tx, bucket []byte, id string) (T, error) {
	var v T
	raw := tx.Bucket(bucket).Get([]byte(id))
	if raw == nil {
		return v, fmt.Errorf("%s %q: %w", bucket[:len(bucket)-1], id, ErrNotFound)
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return v, fmt.Errorf("%s %q: corrupt record: %w", bucket, id, err)
	}
	return v, nil
}

func put(tx *bolt.Tx, bucket []byte, id string, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return tx.Bucket(bucket).Put([]byte(id), raw)
}

func list[T any](b *Bolt, bucket []byte) ([]T, error) {
	var out []T
	err := b.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucket).ForEach(func(k, raw []byte) error {
			var v T
			if err := json.Unmarshal(raw, &v); err != nil {
				return fmt.Errorf("%s %q: corrupt record: %w", bucket, k, err)
			}
			out = append(out, v)
			return nil
		})
	})
	return out, err
}

// PutImage stores an image record.
func (b *Bolt) PutImage(im Image) error {
	return b.db.Update(func(tx *bolt.Tx) error { return put(tx, bucketImages, im.ID, im) })
}

// Image returns one image.
func (b *Bolt) Image(id string) (im Image, err error) {
	err = b.db.View(func(tx *bolt.Tx) error { im, err = get[Image](tx, bucketImages, id); return err })
	return im, err
}

// Images lists images by creation time.
func (b *Bolt) Images() ([]Image, error) {
	ims, err := list[Image](b, bucketImages)
	sort.SliceStable(ims, func(i, j int) bool { return ims[i].Created.Before(ims[j].Created) })
	return ims, err
}

// DeleteImage removes an image record unless a machine uses it.
func (b *Bolt) DeleteImage(id string) error {
	return b.db.Update(func(tx *bolt.Tx) error {
		if _, err := get[Image](tx, bucketImages, id); err != nil {
			return err
		}
		var users []string
		err := tx.Bucket(bucketMachines).ForEach(func(k, raw []byte) error {
			var m Machine
			if json.Unmarshal(raw, &m) == nil && m.Image == id {
				users = append(users, m.ID)
			}
			return nil
		})
		if err != nil {
			return err
		}
		if len(users) > 0 {
			return fmt.Errorf("image %s is used by machine(s) %v: %w", id, users, ErrInUse)
		}
		return tx.Bucket(bucketImages).Delete([]byte(id))
	})
}

// Machine returns one machine.
func (b *Bolt) Machine(id string) (m Machine, err error) {
	err = b.db.View(func(tx *bolt.Tx) error { m, err = get[Machine](tx, bucketMachines, id); return err })
	return m, err
}

// Machines lists machines by id.
func (b *Bolt) Machines() ([]Machine, error) { return list[Machine](b, bucketMachines) }

// UpdateMachine reads, changes and writes a machine in one transaction.
func (b *Bolt) UpdateMachine(id string, fn func(m *Machine, exists bool) error) (Machine, error) {
	var out Machine
	err := b.db.Update(func(tx *bolt.Tx) error {
		m, err := get[Machine](tx, bucketMachines, id)
		exists := err == nil
		if err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		if !exists {
			m = Machine{ID: id}
		}
		if err := fn(&m, exists); err != nil {
			return err
		}
		m.ID = id
		out = m
		return put(tx, bucketMachines, id, m)
	})
	return out, err
}

// DeleteMachine removes a machine and its events.
func (b *Bolt) DeleteMachine(id string) error {
	return b.db.Update(func(tx *bolt.Tx) error {
		if _, err := get[Machine](tx, bucketMachines, id); err != nil {
			return err
		}
		if err := tx.Bucket(bucketMachines).Delete([]byte(id)); err != nil {
			return err
		}
		ev := tx.Bucket(bucketEvents)
		if ev.Bucket([]byte(id)) != nil {
			return ev.DeleteBucket([]byte(id))
		}
		return nil
	})
}

// PutToken stores a token and indexes its hash.
func (b *Bolt) PutToken(t Token) error {
	if t.Hash == "" {
		return errors.New("token without hash")
	}
	return b.db.Update(func(tx *bolt.Tx) error {
		if old, err := get[Token](tx, bucketTokens, t.ID); err == nil && old.Hash != t.Hash {
			if err := tx.Bucket(bucketTokHash).Delete([]byte(old.Hash)); err != nil {
				return err
			}
		}
		if err := tx.Bucket(bucketTokHash).Put([]byte(t.Hash), []byte(t.ID)); err != nil {
			return err
		}
		return put(tx, bucketTokens, t.ID, t)
	})
}

// TokenByHash finds a token by the SHA-256 of its plaintext.
func (b *Bolt) TokenByHash(hash string) (t Token, err error) {
	err = b.db.View(func(tx *bolt.Tx) error {
		id := tx.Bucket(bucketTokHash).Get([]byte(hash))
		if id == nil {
			return fmt.Errorf("token: %w", ErrNotFound)
		}
		t, err = get[Token](tx, bucketTokens, string(id))
		return err
	})
	return t, err
}

// Tokens lists tokens by creation time.
func (b *Bolt) Tokens() ([]Token, error) {
	ts, err := list[Token](b, bucketTokens)
	sort.SliceStable(ts, func(i, j int) bool { return ts[i].Created.Before(ts[j].Created) })
	return ts, err
}

// DeleteToken removes a token.
func (b *Bolt) DeleteToken(id string) error {
	return b.db.Update(func(tx *bolt.Tx) error {
		t, err := get[Token](tx, bucketTokens, id)
		if err != nil {
			return err
		}
		if err := tx.Bucket(bucketTokHash).Delete([]byte(t.Hash)); err != nil {
			return err
		}
		return tx.Bucket(bucketTokens).Delete([]byte(id))
	})
}

// AppendEvents stores events. Concurrent callers are coalesced into one
// transaction (bbolt Batch), so a burst of TFTP transfers does not wait for
// one fsync each.
func (b *Bolt) AppendEvents(evs ...Event) error {
	if len(evs) == 0 {
		return nil
	}
	return b.db.Batch(func(tx *bolt.Tx) error {
		root := tx.Bucket(bucketEvents)
		for _, ev := range evs {
			name := ev.Machine
			if name == "" {
				name = ServerEvents
			}
			bk, err := root.CreateBucketIfNotExists([]byte(name))
			if err != nil {
				return err
			}
			seq, err := bk.NextSequence()
			if err != nil {
				return err
			}
			ev.Seq = seq
			raw, err := json.Marshal(ev)
			if err != nil {
				return err
			}
			if err := bk.Put(seqKey(seq), raw); err != nil {
				return err
			}
			if seq > b.retention {
				cutoff := seq - b.retention
				c := bk.Cursor()
				for k, _ := c.First(); k != nil && binary.BigEndian.Uint64(k) <= cutoff; k, _ = c.Next() {
					if err := c.Delete(); err != nil {
						return err
					}
				}
			}
		}
		return nil
	})
}

// Events returns the most recent events of a machine, oldest first.
func (b *Bolt) Events(machine string, limit int) ([]Event, error) {
	if machine == "" {
		machine = ServerEvents
	}
	var out []Event
	err := b.db.View(func(tx *bolt.Tx) error {
		bk := tx.Bucket(bucketEvents).Bucket([]byte(machine))
		if bk == nil {
			return nil
		}
		c := bk.Cursor()
		for k, raw := c.Last(); k != nil && (limit <= 0 || len(out) < limit); k, raw = c.Prev() {
			var ev Event
			if err := json.Unmarshal(raw, &ev); err != nil {
				return fmt.Errorf("event %d of %s: %w", binary.BigEndian.Uint64(k), machine, err)
			}
			out = append(out, ev)
		}
		return nil
	})
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out, err
}

func seqKey(seq uint64) []byte {
	k := make([]byte, 8)
	binary.BigEndian.PutUint64(k, seq)
	return k
}
