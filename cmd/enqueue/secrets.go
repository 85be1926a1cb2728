package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"

	"github.com/widgetq/widgetq/internal/seal"
)

func newSecretsCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "secrets",
		Short: "Encryption at rest: re-seal stored secrets with the current key",
	}
	cmd.AddCommand(newSecretsResealCmd(a))
	return cmd
}

func newSecretsResealCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "reseal",
		Short: "Seal every stored token and queued task's settings with WIDGETQ_SECRET_KEY",
		Long: `Rewrites, with the key in WIDGETQ_SECRET_KEY, every secret widgetq keeps in
Redis that is in plaintext or sealed with another key: the accounts' access
and refresh tokens, and the settings of queued, scheduled, retrying,
archived and completed tasks. Values sealed with the previous key are
opened with WIDGETQ_SECRET_KEY_PREVIOUS.

To rotate: give workers and producers the new key as WIDGETQ_SECRET_KEY and
the old one as WIDGETQ_SECRET_KEY_PREVIOUS, restart them, run this, and once
it reports nothing left under the old key, drop WIDGETQ_SECRET_KEY_PREVIOUS.
Tasks running while it works keep the value they started with; run it again
after they finish. It is safe to run any number of times.`,
		Args:    cobra.NoArgs,
		PreRunE: a.needRedis,
		RunE: func(cmd *cobra.Command, _ []string) error {
			keys := a.st.Keys()
			if !keys.Enabled() {
				return usagef("WIDGETQ_SECRET_KEY is not set: there is no key to seal with")
			}
			ctx := cmd.Context()
			changed, total, stuck, err := a.st.ResealAccounts(ctx)
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "accounts: %d re-sealed of %d\n", changed, total)
			for _, e := range stuck {
				fmt.Fprintf(a.stderr, "cannot re-seal %v\n", e)
			}
			tc, tt, active, tstuck, err := resealTasks(ctx, a.rdb, keys)
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "tasks: %d re-sealed of %d\n", tc, tt)
			for _, e := range tstuck {
				fmt.Fprintf(a.stderr, "cannot re-seal %v\n", e)
			}
			if active > 0 {
				fmt.Fprintf(a.stdout, "running now: %d tasks keep their values until they finish; run this again afterwards\n", active)
			}
			if n := len(stuck) + len(tstuck); n > 0 {
				return &exitError{code: exitFailure, msg: fmt.Sprintf("%d values could not be re-sealed: they were sealed with a key that is neither WIDGETQ_SECRET_KEY nor WIDGETQ_SECRET_KEY_PREVIOUS, or damaged", n)}
			}
			return nil
		},
	}
}

// casMsgScript replaces a task's encoded message only if no one changed it
// since it was read (asynq rewrites it when a task moves state).
var casMsgScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], 'msg') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'msg', ARGV[2])
return 1`)

// resealTasks re-seals the sealed values inside every resting task's
// message. asynq keeps a task's message, payload bytes verbatim, in the
// hash asynq:{queue}:t:{id}, field msg; a re-sealed value has the same
// length as the old one, so the encoding around it stays valid.
//
// A task whose values no configured key opens is reported in stuck and
// left as it is; the others are still re-sealed.
func resealTasks(ctx context.Context, rdb redis.UniversalClient, keys *seal.Keys) (changed, total, active int, stuck []error, err error) {
	insp := asynq.NewInspectorFromRedisClient(rdb)
	queues, err := insp.Queues()
	if err != nil {
		return 0, 0, 0, nil, fmt.Errorf("list queues: %w", err)
	}
	sort.Strings(queues)
	type lister func(string, ...asynq.ListOption) ([]*asynq.TaskInfo, error)
	for _, q := range queues {
		qi, err := insp.GetQueueInfo(q)
		if err != nil {
			return changed, total, active, stuck, fmt.Errorf("queue %s: %w", q, err)
		}
		active += qi.Active
		for _, list := range []lister{insp.ListPendingTasks, insp.ListScheduledTasks, insp.ListRetryTasks, insp.ListArchivedTasks, insp.ListCompletedTasks} {
			for page := 1; ; page++ {
				infos, err := list(q, asynq.Page(page), asynq.PageSize(500))
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

func resealTask(ctx context.Context, rdb redis.UniversalClient, keys *seal.Keys, queue, id string) (bool, error) {
	k := "asynq:{" + queue + "}:t:" + id
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
