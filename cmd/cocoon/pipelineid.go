package main

import (
	"fmt"
	"io"
	"os"

	"github.com/cocoonhost/cocoon/cmd/internal/cli"
	webclient "github.com/cocoonhost/cocoon/web/client"
)

// pipelineID prints the id a host gives the pipeline of these modules, configs and
// limits around a model, computed locally by the rules of `cocoon push` (the same code
// reads the files and builds the manifest), and with --write-manifest writes its
// canonical manifest, the file `cocoon verify --expect-manifest` compares a host's
// pipeline with. It contacts no host.
func pipelineID(args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := cli.NewFlagSet("cocoon", "pipeline-id --pre FILE.wasm[:CONFIG.json[:LIMITS.json]]... --post FILE.wasm[:CONFIG.json[:LIMITS.json]]... --model NAME [--write-manifest FILE]\n\n"+
		"Prints the id a host gives this pipeline (pre modules in the order given, then the model, then post\n"+
		"modules), computed locally as `cocoon push` builds it. "+moduleSpecHelp+"\n"+
		"Compare the id with the one a host serves, or write the manifest and verify the host's pipeline is\n"+
		"exactly it, configs and limits included: cocoon verify --expect-manifest FILE.", stderr)
	var pre, post moduleFlags
	fs.Var(&pre, "pre", "a pre module and its optional config and limits files, repeatable")
	fs.Var(&post, "post", "a post module and its optional config and limits files, repeatable")
	model := fs.String("model", "", "the model the pipeline serves (required: the id covers it)")
	writeManifest := fs.String("write-manifest", "", "also write the pipeline's canonical manifest to this FILE, for cocoon verify --expect-manifest")
	if err := cli.ParseFlags(fs, args); err != nil {
		return err
	}
	switch {
	case len(pre)+len(post) == 0:
		return cli.UsageError("no module given: use --pre FILE.wasm and/or --post FILE.wasm")
	case *model == "":
		return cli.UsageError("no --model given: the pipeline id covers the model")
	}
	files, err := webclient.ReadPipelineFiles(pre, post)
	if err != nil {
		return err
	}
	m, err := files.Manifest(*model)
	if err != nil {
		return err
	}
	if *writeManifest != "" {
		if err := os.WriteFile(*writeManifest, append(m.Canonical(), '\n'), 0o644); err != nil {
			return fmt.Errorf("--write-manifest: %w", err)
		}
	}
	_, err = fmt.Fprintln(stdout, m.ID())
	return err
}
