package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/widgetq/widgetq/internal/reseal"
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
			tc, tt, active, tstuck, err := reseal.Tasks(ctx, a.rdb, keys)
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
