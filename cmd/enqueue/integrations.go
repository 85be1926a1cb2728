package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/widgetq/widgetq/internal/store"
)

func newIntegrationsCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "integrations",
		Short: "Register, list and remove the Kommo OAuth integrations this deployment serves",
	}
	cmd.AddCommand(newIntegrationsAddCmd(a), newIntegrationsListCmd(a), newIntegrationsRemoveCmd(a))
	return cmd
}

func newIntegrationsAddCmd(a *app) *cobra.Command {
	var i store.Integration
	var widgets, secretFrom, installFile string
	cmd := &cobra.Command{
		Use:   "add --name N --client-id ID --redirect-uri URI [--widgets code1,code2] [--client-secret -] [--state S] [--install-on-connect FILE]",
		Short: "Register (or replace) an integration; its secret is sealed with WIDGETQ_SECRET_KEY",
		Long: `Registers an integration: its OAuth client ID, the redirect URI registered
with it, and the widgets it owns (each widget belongs to the integration
whose archive uploaded it). The client secret is read from
$KOMMO_CLIENT_SECRET, or from the first line of stdin with
--client-secret -; never from a flag's value (flags end up in shell
history). A widget another integration owns is refused.

Accounts that install the integration in Kommo arrive at 'enqueue serve''s
GET /oauth/callback (set the redirect URI there): --state, when given, must
come back as the redirect's state parameter; --install-on-connect names a
JSON file of settings by widget code ({"code":{...settings...}}, each code
one of --widgets) whose installs are enqueued as soon as an account
connects. Those settings are sealed like the secret.`,
		Args:    cobra.NoArgs,
		PreRunE: a.needRedis,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch secretFrom {
			case "":
				i.ClientSecret = a.getenv("KOMMO_CLIENT_SECRET")
			case "-":
				line, err := bufio.NewReader(a.stdin).ReadString('\n')
				if err != nil && line == "" {
					return usagef("--client-secret -: no secret on stdin")
				}
				i.ClientSecret = strings.TrimSpace(line)
			default:
				return usagef("--client-secret: only - (read stdin) is accepted; give the secret by $KOMMO_CLIENT_SECRET or stdin, never as a flag value")
			}
			for _, w := range strings.Split(widgets, ",") {
				if w = strings.TrimSpace(w); w != "" {
					i.Widgets = append(i.Widgets, w)
				}
			}
			if installFile != "" {
				b, err := os.ReadFile(installFile)
				if err != nil {
					return fmt.Errorf("cannot read --install-on-connect file %s: %w", installFile, unwrapPathErr(err))
				}
				dec := json.NewDecoder(bytes.NewReader(b))
				if err := dec.Decode(&i.InstallOnConnect); err != nil || len(i.InstallOnConnect) == 0 {
					return usagef("--install-on-connect %s: want a JSON object of settings by widget code, {\"code\":{...}}: %v", installFile, err)
				}
			}
			if err := i.Validate(); err != nil {
				return &usageError{err}
			}
			if err := a.st.PutIntegration(cmd.Context(), i); err != nil {
				if strings.HasPrefix(err.Error(), "widgets:") {
					return &usageError{err}
				}
				return err
			}
			sealed := "sealed"
			if !a.st.Keys().Enabled() {
				sealed = "in plaintext (no WIDGETQ_SECRET_KEY)"
			}
			fmt.Fprintf(a.stdout, "integration %s stored (client %s, %d widgets; secret %s)\n", i.Name, i.ClientID, len(i.Widgets), sealed)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&i.Name, "name", "", "the integration's name (lower case, digits, - and _)")
	f.StringVar(&i.ClientID, "client-id", "", "its OAuth client_id")
	f.StringVar(&i.RedirectURI, "redirect-uri", "", "the https redirect URI registered with it")
	f.StringVar(&widgets, "widgets", "", "the widget codes it owns, comma-separated")
	f.StringVar(&secretFrom, "client-secret", "", "- to read the client secret from stdin (default $KOMMO_CLIENT_SECRET)")
	f.StringVar(&i.State, "state", "", "the state parameter the install redirect must carry (default: not checked)")
	f.StringVar(&installFile, "install-on-connect", "", "JSON file of settings by widget code, installed when an account connects")
	_ = cmd.MarkFlagRequired("name")
	_ = cmd.MarkFlagRequired("client-id")
	_ = cmd.MarkFlagRequired("redirect-uri")
	return cmd
}

func newIntegrationsListCmd(a *app) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:     "list",
		Short:   "List the integrations (never a secret)",
		Args:    cobra.NoArgs,
		PreRunE: a.needRedis,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if format != "table" && format != "jsonl" {
				return usagef("--format: want table or jsonl, got %q", format)
			}
			list, err := a.st.Integrations(cmd.Context())
			if err != nil {
				return err
			}
			if format == "jsonl" {
				enc := json.NewEncoder(a.stdout)
				for _, i := range list {
					_ = enc.Encode(i) // ClientSecret is never encoded
				}
				return nil
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tCLIENT ID\tREDIRECT URI\tWIDGETS\tSTATE\tINSTALL ON CONNECT")
			for _, i := range list {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", i.Name, i.ClientID, i.RedirectURI, strings.Join(i.Widgets, ","), yesNo(i.HasState),
					strings.Join(i.InstallsOnConnect, ","))
			}
			if len(list) == 0 {
				fmt.Fprintln(tw, "(none registered)")
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&format, "format", "table", "table or jsonl")
	return cmd
}

func newIntegrationsRemoveCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:     "remove NAME",
		Short:   "Remove an integration and its claim on its widgets",
		Args:    cobra.ExactArgs(1),
		PreRunE: a.needRedis,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := a.st.DeleteIntegration(cmd.Context(), args[0]); err != nil {
				if errors.Is(err, store.ErrNotFound) {
					return fmt.Errorf("integration %s: not found", args[0])
				}
				return err
			}
			fmt.Fprintf(a.stdout, "integration %s removed\n", args[0])
			return nil
		},
	}
}
