// Package keyspace names widgetq's Redis keys, in one place for every
// package that writes them. Every key starts with the prefix in braces
// ("{widgetq}:…"), a Redis Cluster hash tag: all of widgetq's keys live in
// one slot, so scripts that touch several of them stay atomic on a cluster.
// The queues' own keys are asynq's.
package keyspace

import "strings"

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
// "{widgetq}:acct:7".
func (s Space) Key(parts ...string) string { return string(s) + strings.Join(parts, ":") }

// Pattern matches every key of the space (for SCAN and UNLINK).
func (s Space) Pattern() string { return string(s) + "*" }
