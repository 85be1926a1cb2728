package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
)

// JournalEntry is a task on its way from asynq's archive back to its
// queue. A replay writes it before deleting the archived task and removes
// it once the fresh task is queued, so an interrupted replay can finish
// the move instead of losing the task.
type JournalEntry struct {
	TaskID    string        `json:"task_id"`
	Queue     string        `json:"queue"`
	Type      string        `json:"type"`
	Payload   []byte        `json:"payload"`
	MaxRetry  int           `json:"max_retry"`
	Timeout   time.Duration `json:"timeout"`
	Retention time.Duration `json:"retention"`
}

func (s *JournalStore) journalKey() string { return s.key("replay", "journal") }

// JournalPut records a move.
func (s *JournalStore) JournalPut(ctx context.Context, e JournalEntry) error {
	b, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("store: journal: %w", err)
	}
	return redisErr("journal put", s.rdb.HSet(ctx, s.journalKey(), e.TaskID, b).Err())
}

// JournalDel forgets a finished move.
func (s *JournalStore) JournalDel(ctx context.Context, taskID string) error {
	return redisErr("journal delete", s.rdb.HDel(ctx, s.journalKey(), taskID).Err())
}

// JournalAll returns the unfinished moves.
func (s *JournalStore) JournalAll(ctx context.Context) ([]JournalEntry, error) {
	m, err := s.rdb.HGetAll(ctx, s.journalKey()).Result()
	if err != nil {
		return nil, redisErr("journal read", err)
	}
	out := make([]JournalEntry, 0, len(m))
	for id, v := range m {
		var e JournalEntry
		if err := json.Unmarshal([]byte(v), &e); err != nil {
			return nil, fmt.Errorf("store: journal entry %s: %w", id, err)
		}
		out = append(out, e)
	}
	return out, nil
}
