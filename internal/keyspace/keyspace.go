// Package keyspace names widgetq's Redis keys, in one place for every
// package that writes them. Every key starts with the prefix in braces
// ("{widgetq}:…"), a Redis Cluster hash tag: all of widgetq's keys live in
// one slot, so scripts that touch several of them stay atomic on a cluster.
// The queues' own keys are asynq's.
package keyspace

import (
	"strconv"
	"strings"
)

// DefaultPrefix is the prefix when none is given.
const DefaultPrefix = "widgetq"

// Space is one deployment's keys: "{prefix}:".
type Space string

// New returns the key space of prefix (empty: DefaultPrefix).
func New(prefix string) Space {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	return Space("{" + prefix + "}:")
}

// Key joins parts with colons under the space: Key("acct", "7") is
// "{widgetq}:acct:7". It allocates once: the worker names several keys
// per task.
func (s Space) Key(parts ...string) string {
	n := len(s) + len(parts)
	for _, p := range parts {
		n += len(p)
	}
	var b strings.Builder
	b.Grow(n)
	b.WriteString(string(s))
	for i, p := range parts {
		if i > 0 {
			b.WriteByte(':')
		}
		b.WriteString(p)
	}
	return b.String()
}

// KeyID is Key(kind, n, parts...) with n in decimal, still in one
// allocation: Key("res", strconv.FormatInt(n, 10), code) would be two.
func (s Space) KeyID(kind string, n int64, parts ...string) string {
	var num [20]byte
	d := strconv.AppendInt(num[:0], n, 10)
	size := len(s) + len(kind) + 1 + len(d) + len(parts)
	for _, p := range parts {
		size += len(p)
	}
	var b strings.Builder
	b.Grow(size)
	b.WriteString(string(s))
	b.WriteString(kind)
	b.WriteByte(':')
	b.Write(d)
	for _, p := range parts {
		b.WriteByte(':')
		b.WriteString(p)
	}
	return b.String()
}

// Pattern matches every key of the space (for SCAN and UNLINK).
func (s Space) Pattern() string { return string(s) + "*" }
