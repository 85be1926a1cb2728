// Package reseal re-seals the sealed values inside asynq's resting tasks
// in place, for `enqueue secrets reseal` after a key rotation.
//
// It relies on how asynq stores a task: a hash asynq:{queue}:t:{id} whose
// field msg holds the encoded message with the payload bytes verbatim. A
// re-sealed value has the same length as the old one, so the encoding
// around it stays valid. reseal_test.go pins that layout against the asynq
// version in go.mod: an upgrade that changes it fails a test, not a
// production run.
package reseal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/widgetq/widgetq/internal/seal"
)

// TaskKey is the hash asynq keeps a task in.
func TaskKey(queue, id string) string { return "asynq:{" + queue + "}:t:" + id }

// casMsgScript replaces a task's encoded message only if no one changed it
// since it was read (asynq rewrites it when a task moves state).
var casMsgScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], 'msg') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'msg', ARGV[2])
return 1`)

// Tasks re-seals the sealed values inside every resting task's
// message. asynq keeps a task's message, payload bytes verbatim, in the
// hash asynq:{queue}:t:{id}, field msg; a re-sealed value has the same
// length as the old one, so the encoding around it stays valid.
//
// A task whose values no configured key opens is reported in stuck and
// left as it is; the others are still re-sealed.
//
// With no queues named, every queue in the Redis is re-sealed.
func Tasks(ctx context.Context, rdb redis.UniversalClient, keys *seal.Keys, only ...string) (changed, total, active int, stuck []error, err error) {
	insp := asynq.NewInspectorFromRedisClient(rdb)
	queues := only
	if len(queues) == 0 {
		if queues, err = insp.Queues(); err != nil {
			return 0, 0, 0, nil, fmt.Errorf("list queues: %w", err)
		}
	}
	sort.Strings(queues)
	type lister func(string, ...asynq.ListOption) ([]*asynq.TaskInfo, error)
queues:
	for _, q := range queues {
		qi, err := insp.GetQueueInfo(q)
		if err != nil {
			if QueueGone(insp, q) {
				continue // deleted since it was listed: nothing left to re-seal
			}
			return changed, total, active, stuck, fmt.Errorf("queue %s: %w", q, err)
		}
		active += qi.Active
		for _, list := range []lister{insp.ListPendingTasks, insp.ListScheduledTasks, insp.ListRetryTasks, insp.ListArchivedTasks, insp.ListCompletedTasks} {
			for page := 1; ; page++ {
				infos, err := list(q, asynq.Page(page), asynq.PageSize(500))
				if errors.Is(err, asynq.ErrQueueNotFound) {
					continue queues
				}
				if err != nil {
					return changed, total, active, stuck, fmt.Errorf("queue %s: list tasks: %w", q, err)
				}
				for _, ti := range infos {
					total++
					if !bytes.Contains(ti.Payload, []byte(seal.Prefix)) {
						continue
					}
					did, err := resealTask(ctx, rdb, keys, q, ti.ID)
					if errors.Is(err, seal.ErrUnknownKey) || errors.Is(err, seal.ErrCorrupt) {
						stuck = append(stuck, fmt.Errorf("queue %s: task %s: %w", q, ti.ID, err))
						continue
					}
					if err != nil {
						return changed, total, active, stuck, fmt.Errorf("queue %s: task %s: %w", q, ti.ID, err)
					}
					if did {
						changed++
					}
				}
				if len(infos) < 500 {
					break
				}
			}
		}
	}
	return changed, total, active, stuck, nil
}

// QueueGone reports whether queue, listed a moment ago, is no longer
// among the Redis's queues (deleted meanwhile): asynq's GetQueueInfo says
// so only in an error of its internal package.
func QueueGone(insp *asynq.Inspector, queue string) bool {
	queues, err := insp.Queues()
	return err == nil && !slices.Contains(queues, queue)
}

func resealTask(ctx context.Context, rdb redis.UniversalClient, keys *seal.Keys, queue, id string) (bool, error) {
	k := TaskKey(queue, id)
	for range 5 {
		msg, err := rdb.HGet(ctx, k, "msg").Bytes()
		if err == redis.Nil {
			return false, nil // finished and gone meanwhile
		}
		if err != nil {
			return false, err
		}
		out, n, err := keys.ResealAll(msg)
		if err != nil {
			return false, err
		}
		if n == 0 {
			return false, nil
		}
		ok, err := casMsgScript.Run(ctx, rdb, []string{k}, msg, out).Int()
		if err != nil {
			return false, err
		}
		if ok == 1 {
			return true, nil
		}
	}
	return false, fmt.Errorf("it kept changing; run the re-seal again")
}
