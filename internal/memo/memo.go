// Package memo remembers the values of pure functions of a key, within a
// bound: the worker's per-task checks of an account's base URL are the
// same for every task of the account.
package memo

import (
	"sync"
	"sync/atomic"
)

// Max is how many values a Map holds before it forgets them all.
const Max = 1 << 14

// Map is safe for concurrent use; its zero value is empty. It suits values
// that never go stale (a pure function of the key): it is cleared, not
// aged, when it reaches Max.
type Map[K comparable, V any] struct {
	m sync.Map
	n atomic.Int64
}

// Load returns the value stored for k.
func (c *Map[K, V]) Load(k K) (V, bool) {
	v, ok := c.m.Load(k)
	val, _ := v.(V) // a nil interface stored (a nil error) reads as V's zero
	return val, ok
}

// Store remembers v for k, first forgetting everything when Max values
// are held.
func (c *Map[K, V]) Store(k K, v V) {
	if c.n.Add(1) > Max {
		c.m.Clear()
		c.n.Store(1)
	}
	c.m.Store(k, v)
}

// Len counts the values held.
func (c *Map[K, V]) Len() int {
	n := 0
	c.m.Range(func(any, any) bool { n++; return true })
	return n
}
