package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/widgetq/widgetq/internal/bulk"
	"github.com/widgetq/widgetq/internal/store"
	"github.com/widgetq/widgetq/tasks"
)

func newAccountsCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "accounts",
		Short: "Import, add, list, remove and unblock account credentials",
	}
	cmd.AddCommand(newAccountsImportCmd(a), newAccountsAddCmd(a), newAccountsListCmd(a), newAccountsRemoveCmd(a), newAccountsUnblockCmd(a))
	return cmd
}

// accountLine is one line of an accounts file (store.AccountInput).
type accountLine = store.AccountInput

// parseAccountLine reads one line of `accounts import`.
func parseAccountLine(line []byte) (store.Account, error) { return store.ParseAccountJSON(line, 0) }

func newAccountsImportCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "import FILE|-",
		Short: "Import account credentials from a JSON-lines file",
		Long: `Imports one account a line:

  {"account_id":123,"base_url":"https://acme.kommo.com","access_token":"…",
   "refresh_token":"…","expires_at":"2026-12-31T23:59:59Z"}

base_url may be replaced by "subdomain" (and "domain", default kommo.com).
Its host must be on WIDGETQ_KOMMO_HOSTS (default .kommo.com,.amocrm.ru,
.amocrm.com), over https, without a path: a line with another is rejected
naming the rule, so no token is ever sent elsewhere.
refresh_token and expires_at are optional (a long-lived token has neither).
An account already stored is replaced. Bad lines are reported with their
line number and skipped; the good ones are imported; the exit code is 1
when any line was rejected. Tokens are never printed.`,
		Args:    cobra.ExactArgs(1),
		PreRunE: a.needRedis,
		RunE: func(cmd *cobra.Command, args []string) error {
			in, name, closeIn, err := a.open(args[0])
			if err != nil {
				return err
			}
			defer closeIn()
			lr := bulk.NewLineReader(in)
			imported, rejected := 0, 0
			for {
				line, n, long, err := lr.Next()
				if err == io.EOF {
					break
				}
				if err != nil {
					return fmt.Errorf("read %s: %w", name, err)
				}
				reject := func(reason string) {
					rejected++
					fmt.Fprintf(a.stderr, "%s: line %d: %s\n", name, n, reason)
				}
				if long {
					reject(fmt.Sprintf("line longer than %d bytes", bulk.MaxLine))
					continue
				}
				acct, err := parseAccountLine(line)
				if err == nil {
					err = a.st.CheckAccount(acct) // the host allow-list
				}
				if err != nil {
					reject(err.Error())
					continue
				}
				if err := a.st.PutAccount(cmd.Context(), acct); err != nil {
					return err
				}
				imported++
			}
			fmt.Fprintf(a.stdout, "imported %d accounts, rejected %d lines\n", imported, rejected)
			if rejected > 0 {
				return &exitError{code: exitFailure}
			}
			return nil
		},
	}
}

func newAccountsAddCmd(a *app) *cobra.Command {
	var l accountLine
	var id int64
	cmd := &cobra.Command{
		Use:   "add --account ID (--base-url URL | --subdomain S [--domain D])",
		Short: "Add (or replace) one account's credentials",
		Long: `Adds one account. The tokens are read from $KOMMO_ACCESS_TOKEN and
$KOMMO_REFRESH_TOKEN unless given as flags (flags end up in shell history).`,
		Args:    cobra.NoArgs,
		PreRunE: a.needRedis,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l.AccountID = json.Number(strconv.FormatInt(id, 10))
			if l.AccessToken == "" {
				l.AccessToken = a.getenv("KOMMO_ACCESS_TOKEN")
			}
			if l.RefreshToken == "" {
				l.RefreshToken = a.getenv("KOMMO_REFRESH_TOKEN")
			}
			acct, err := l.ToAccount()
			if err == nil {
				err = a.st.CheckAccount(acct)
			}
			if err != nil {
				return &usageError{err}
			}
			if err := a.st.PutAccount(cmd.Context(), acct); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "account %d stored (%s, integration %s)\n", acct.ID, acct.BaseURL, store.IntegrationOf(acct.Integration))
			return nil
		},
	}
	f := cmd.Flags()
	f.Int64Var(&id, "account", 0, "account ID")
	f.StringVar(&l.Integration, "integration", "", "the integration the tokens were issued to (default: default)")
	f.StringVar(&l.BaseURL, "base-url", "", "the account's API base, e.g. https://acme.kommo.com")
	f.StringVar(&l.Subdomain, "subdomain", "", "the account's subdomain (instead of --base-url)")
	f.StringVar(&l.Domain, "domain", "", "with --subdomain: kommo.com (default) or amocrm.ru")
	f.StringVar(&l.AccessToken, "access-token", "", "access token (default $KOMMO_ACCESS_TOKEN)")
	f.StringVar(&l.RefreshToken, "refresh-token", "", "refresh token (default $KOMMO_REFRESH_TOKEN)")
	f.StringVar(&l.ExpiresAt, "expires-at", "", "access token expiry, RFC 3339")
	_ = cmd.MarkFlagRequired("account")
	return cmd
}

func newAccountsListCmd(a *app) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:     "list",
		Short:   "List accounts (never their tokens)",
		Args:    cobra.NoArgs,
		PreRunE: a.needRedis,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if format != "table" && format != "jsonl" {
				return usagef("--format: want table or jsonl, got %q", format)
			}
			blocked := map[int64]bool{}
			if bl, err := a.st.ListBlocked(cmd.Context()); err == nil {
				for _, b := range bl {
					blocked[b.AccountID] = true
				}
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
			enc := json.NewEncoder(a.stdout)
			if format == "table" {
				fmt.Fprintln(tw, "ACCOUNT\tINTEGRATION\tBASE URL\tHOST\tREFRESH TOKEN\tEXPIRES\tBLOCKED")
			}
			var after int64
			for {
				page, err := a.st.ListAccounts(cmd.Context(), after, 500)
				if err != nil {
					return err
				}
				for _, info := range page {
					// An account stored before the allow-list changed: its
					// tasks fail host_not_allowed without a request.
					hostOK := a.st.Hosts().Allowed(info.BaseURL)
					if format == "jsonl" {
						_ = enc.Encode(struct {
							store.Info
							HostAllowed bool `json:"host_allowed"`
							Blocked     bool `json:"blocked"`
						}{info, hostOK, blocked[info.ID]})
						continue
					}
					exp := "-"
					if !info.ExpiresAt.IsZero() {
						exp = info.ExpiresAt.Format(time.RFC3339)
					}
					host := "allowed"
					if !hostOK {
						host = "NOT ALLOWED"
					}
					fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", info.ID, info.Integration, info.BaseURL, host, yesNo(info.HasRefreshToken), exp, yesNo(blocked[info.ID]))
				}
				if len(page) < 500 {
					break
				}
				after = page[len(page)-1].ID
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&format, "format", "table", "table or jsonl")
	return cmd
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func parseID(s string) (int64, error) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return 0, usagef("account ID: want a positive integer, got %q", s)
	}
	return n, nil
}

func newAccountsRemoveCmd(a *app) *cobra.Command {
	var integ string
	cmd := &cobra.Command{
		Use:     "remove ID [--integration NAME]",
		Short:   "Remove an account's credentials (of one integration)",
		Args:    cobra.ExactArgs(1),
		PreRunE: a.needRedis,
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseID(args[0])
			if err != nil {
				return err
			}
			if integ != "" && !tasks.ValidIntegration(integ) {
				return usagef("--integration: %.50q is not an integration name", integ)
			}
			if err := a.st.DeleteAccount(cmd.Context(), id, integ); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "account %d removed (integration %s)\n", id, store.IntegrationOf(integ))
			return nil
		},
	}
	cmd.Flags().StringVar(&integ, "integration", "", "whose credentials (default: default)")
	return cmd
}

func newAccountsUnblockCmd(a *app) *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:   "unblock ID | --all",
		Short: "Clear an account's Kommo block mark, or every mark and the pause of all Kommo traffic",
		Long: `Clears the mark widgetq sets when Kommo answers an account with its HTML
403 block page. Until the mark is cleared (or runs out), the account's
tasks fail at once without calling Kommo. Replay them afterwards with
'enqueue replay --account ID'.

--all clears every account's mark and lifts the pause of all Kommo
traffic that the workers start when blocks come from several accounts at
once (Kommo blocked the IP): do it once Kommo support lifted the block.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if all {
				return cobra.NoArgs(cmd, args)
			}
			return cobra.ExactArgs(1)(cmd, args)
		},
		PreRunE: a.needRedis,
		RunE: func(cmd *cobra.Command, args []string) error {
			if all {
				n, paused, err := a.st.UnblockAll(cmd.Context())
				if err != nil {
					return err
				}
				fmt.Fprintf(a.stdout, "%d accounts unblocked", n)
				if paused {
					fmt.Fprint(a.stdout, "; the pause of all Kommo traffic is lifted")
				}
				fmt.Fprintln(a.stdout)
				return nil
			}
			id, err := parseID(args[0])
			if err != nil {
				return err
			}
			had, err := a.st.Unblock(cmd.Context(), id)
			if err != nil {
				return err
			}
			if !had {
				fmt.Fprintf(a.stdout, "account %d was not marked blocked\n", id)
				return nil
			}
			fmt.Fprintf(a.stdout, "account %d unblocked\n", id)
			return nil
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "every account, and the pause of all Kommo traffic")
	return cmd
}

// open opens FILE or stdin ("-").
func (a *app) open(arg string) (io.Reader, string, func(), error) {
	if arg == "-" {
		return a.stdin, "stdin", func() {}, nil
	}
	f, err := os.Open(arg)
	if err != nil {
		return nil, "", nil, fmt.Errorf("cannot read %s: %w", arg, unwrapPathErr(err))
	}
	return f, arg, func() { f.Close() }, nil
}

func unwrapPathErr(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
