package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/widgetq/widgetq/internal/store"
	"github.com/widgetq/widgetq/tasks"
)

func newBatchesCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "batches",
		Short: "List batches and show one: counts by status, and whether it is done",
		Long: `Every bulk run, every array sent to the HTTP API and every producer
InstallMany is a batch. Its counts follow its tasks' results; it is done
when no more tasks will join and every one has a final result (a replay
reopens it). Batches are kept 30 days after their last change.`,
	}
	cmd.AddCommand(newBatchesListCmd(a), newBatchesShowCmd(a))
	return cmd
}

func newBatchesListCmd(a *app) *cobra.Command {
	var limit int
	cmd := &cobra.Command{
		Use:     "list [--limit N]",
		Short:   "The newest batches",
		Args:    cobra.NoArgs,
		PreRunE: a.needRedis,
		RunE: func(cmd *cobra.Command, _ []string) error {
			list, err := a.st.Batches(cmd.Context(), time.Time{}, limit)
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "BATCH\tCREATED (UTC)\tTOTAL\tDONE\tCOUNTS")
			for _, b := range list {
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", b.ID, b.CreatedAt.UTC().Format("2006-01-02 15:04:05"), b.Total, yesNo(b.Done), countsText(b.Counts))
			}
			if len(list) == 0 {
				fmt.Fprintln(tw, "(none)")
			}
			return tw.Flush()
		},
	}
	cmd.Flags().IntVar(&limit, "limit", 50, "how many")
	return cmd
}

func newBatchesShowCmd(a *app) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:     "show ID [--format table|json]",
		Short:   "One batch: total, counts by status, done",
		Args:    cobra.ExactArgs(1),
		PreRunE: a.needRedis,
		RunE: func(cmd *cobra.Command, args []string) error {
			if format != "table" && format != "json" {
				return usagef("--format: want table or json, got %q", format)
			}
			if !tasks.ValidBatchID(args[0]) {
				return usagef("batch ID: want b_ and 16 hex digits, got %.40q", args[0])
			}
			b, err := a.st.Batch(cmd.Context(), args[0])
			if errors.Is(err, store.ErrNotFound) {
				return fmt.Errorf("batch %s: not found (never made, or expired)", args[0])
			}
			if err != nil {
				return err
			}
			if format == "json" {
				return json.NewEncoder(a.stdout).Encode(b)
			}
			fmt.Fprintf(a.stdout, "batch %s\ncreated %s\ntotal %d\ndone %s\n", b.ID, b.CreatedAt.UTC().Format(time.RFC3339), b.Total, yesNo(b.Done))
			if !b.DoneAt.IsZero() {
				fmt.Fprintf(a.stdout, "done at %s\n", b.DoneAt.UTC().Format(time.RFC3339))
			}
			fmt.Fprintf(a.stdout, "counts %s\n", countsText(b.Counts))
			return nil
		},
	}
	cmd.Flags().StringVar(&format, "format", "table", "table or json")
	return cmd
}

// countsText is "installed 19, failed 1", in the statuses' order, then
// superseded.
func countsText(c map[string]int64) string {
	var parts []string
	for _, st := range append(slices.Clone(store.Statuses), "superseded") {
		if n := c[string(st)]; n != 0 {
			parts = append(parts, fmt.Sprintf("%s %d", st, n))
		}
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, ", ")
}
