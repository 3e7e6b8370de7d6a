package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"time"

	"github.com/cocoonhost/cocoon/cmd/internal/cli"
	"github.com/cocoonhost/cocoon/host"
)

// logs prints the module logs of a pipeline's recent failed requests, for its owners.
func logs(args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := cli.NewFlagSet("cocoon", `logs --pipeline ID [--host URL] [--api-key KEY]

Prints the module logs of a pipeline's recent failed requests, oldest first: when each
failed, what its client was told, and what the modules logged (a module's logs never
reach the client). Only the pipeline's owners (the API keys that uploaded it) may read
them, and only what failed since they owned it. The host keeps, in memory, the last 16
failures of each of the 128 pipelines that failed last, each up to 32 records and 8 KiB:
a restart forgets them.`, stderr)
	newClient := hostFlags(fs)
	id := fs.String("pipeline", "", "the pipeline (its 64-hex id)")
	if err := cli.ParseFlags(fs, args); err != nil {
		return err
	}
	if err := host.CheckHash("sha256:" + *id); err != nil {
		return cli.UsageError(fmt.Sprintf("--pipeline %q is not a pipeline id: an id is 64 lowercase hex digits", *id))
	}
	c, err := newClient()
	if err != nil {
		return err
	}
	failed, err := c.FailedRequests(context.Background(), *id)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(stdout)
	if len(failed) == 0 {
		fmt.Fprintln(w, "no failed requests kept for this pipeline")
	}
	for _, f := range failed {
		fmt.Fprintf(w, "%s  %d %s: %s\n", f.Time.Format(time.RFC3339), f.Status, f.Code, f.Message)
		if f.Dropped > 0 {
			fmt.Fprintf(w, "    (%d earlier records not kept)\n", f.Dropped)
		}
		for _, r := range f.Logs {
			fmt.Fprintf(w, "    %s\n", r)
		}
		if f.Truncated > 0 {
			fmt.Fprintf(w, "    (%d records cut to 2 KiB)\n", f.Truncated)
		}
	}
	return w.Flush()
}
