package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/cocoonhost/cocoon/cmd/internal/cli"
	"github.com/cocoonhost/cocoon/host"
	webclient "github.com/cocoonhost/cocoon/web/client"
)

// moduleFlags collects repeated --pre or --post values: FILE.wasm[:CONFIG.json[:LIMITS.json]].
type moduleFlags []string

func (m *moduleFlags) String() string     { return strings.Join(*m, " ") }
func (m *moduleFlags) Set(v string) error { *m = append(*m, v); return nil }

// moduleSpecHelp says what a --pre or --post value is, for the help of push and
// pipeline-id.
const moduleSpecHelp = "A module's config is the JSON in CONFIG.json, its limits the JSON object in LIMITS.json\n" +
	"(members of a manifest's \"limits\", see abi/SPEC.md; unset ones take the defaults)."

// hostList is push's repeatable --host; its default is $COCOON_HOST (or defaultHost)
// until a --host is given.
type hostList struct {
	hosts []string
	set   bool
}

func (h *hostList) String() string { return strings.Join(h.hosts, " ") }

func (h *hostList) Set(v string) error {
	if !h.set {
		h.hosts, h.set = nil, true
	}
	h.hosts = append(h.hosts, v)
	return nil
}

// push uploads a pipeline in the format of POST /v1/pipelines (see package web) to
// each host and prints its id.
func push(args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := cli.NewFlagSet("cocoon", "push --pre FILE.wasm[:CONFIG.json[:LIMITS.json]]... --post FILE.wasm[:CONFIG.json[:LIMITS.json]]... [--model NAME] [--host URL]...\n\n"+
		"Uploads a pipeline (pre modules in the order given, then the model, then post modules) and prints its id.\n"+
		moduleSpecHelp+" The same pipeline pushed twice has the same id,\n"+
		"the one `cocoon pipeline-id` computes without a host.\n"+
		"With --host given more than once it pushes the pipeline to each host, with the same API key, and prints\n"+
		"\"ID  HOST\" for each host that took it; the id is the same on every host (without --model, the model is\n"+
		"the first host's first). It exits 1 when any host failed, after trying them all.", stderr)
	var pre, post moduleFlags
	fs.Var(&pre, "pre", "a pre module and its optional config and limits files, repeatable")
	fs.Var(&post, "post", "a post module and its optional config and limits files, repeatable")
	model := fs.String("model", "", "the model the pipeline serves (default: the host's first model)")
	verbose := fs.Bool("verbose", false, "also print each module's hash and the pipeline's base URL (to stderr)")
	hosts := &hostList{hosts: []string{envOr("COCOON_HOST", defaultHost)}}
	newClient := connectFlagsOf(fs, hosts, "API key, from the file cocoon-host serve names at start (sent to every --host)", false)
	if err := cli.ParseFlags(fs, args); err != nil {
		return err
	}
	if len(pre)+len(post) == 0 {
		return cli.UsageError("no module given: use --pre FILE.wasm and/or --post FILE.wasm")
	}
	clients := make([]*webclient.Client, len(hosts.hosts))
	for i, h := range hosts.hosts {
		var err error
		if clients[i], err = newClient(h, missingKey); err != nil {
			return err
		}
	}
	files, err := webclient.ReadPipelineFiles(pre, post)
	if err != nil {
		return err
	}
	ctx := context.Background()
	if *model == "" {
		if *model, err = clients[0].FirstModel(ctx); err != nil {
			return err
		}
	}
	m, err := files.Manifest(*model)
	if err != nil {
		return err
	}
	if len(clients) == 1 {
		return pushTo(ctx, clients[0], m, files, *verbose, stdout, stderr, false)
	}
	failed := 0
	for _, c := range clients {
		if err := pushTo(ctx, c, m, files, *verbose, stdout, stderr, true); err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", c.BaseURL(), err)
			failed++
		}
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d hosts did not take pipeline %s", failed, len(clients), m.ID())
	}
	return nil
}

// pushTo pushes the pipeline of m to c's host and prints its id, followed by the host
// when named.
func pushTo(ctx context.Context, c *webclient.Client, m *host.Manifest, files *webclient.PipelineFiles, verbose bool, stdout, stderr io.Writer, named bool) error {
	p, err := c.Push(ctx, m, files.Wasm)
	if err != nil {
		return err
	}
	if p.ID != m.ID() { // the host computes it from what it took
		return fmt.Errorf("the host gave the pipeline id %s, not %s: it did not take the manifest sent", p.ID, m.ID())
	}
	if verbose {
		for _, h := range p.Modules {
			fmt.Fprintf(stderr, "%s  %s\n", h, files.Names[h])
		}
		fmt.Fprintf(stderr, "model %s; base URL for OpenAI SDKs: %s%s\n", m.Model, c.BaseURL(), p.BaseURL)
	}
	if named {
		_, err = fmt.Fprintf(stdout, "%s  %s\n", p.ID, c.BaseURL())
		return err
	}
	_, err = fmt.Fprintln(stdout, p.ID)
	return err
}
