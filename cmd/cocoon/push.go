package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"

	"github.com/cocoonhost/cocoon/abi"
	"github.com/cocoonhost/cocoon/cmd/internal/cli"
	"github.com/cocoonhost/cocoon/host"
	"github.com/cocoonhost/cocoon/internal/strictjson"
)

// moduleFlags collects repeated --pre or --post values: FILE.wasm[:CONFIG.json[:LIMITS.json]].
type moduleFlags []string

func (m *moduleFlags) String() string     { return strings.Join(*m, " ") }
func (m *moduleFlags) Set(v string) error { *m = append(*m, v); return nil }

// moduleSpecHelp says what a --pre or --post value is, for the help of push and
// pipeline-id.
const moduleSpecHelp = "A module's config is the JSON in CONFIG.json, its limits the JSON object in LIMITS.json\n" +
	"(members of a manifest's \"limits\", see abi/SPEC.md; unset ones take the defaults)."

// push uploads a pipeline in the format of POST /v1/pipelines (see package web) and
// prints its id.
func push(args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := cli.NewFlagSet("cocoon", "push --pre FILE.wasm[:CONFIG.json[:LIMITS.json]]... --post FILE.wasm[:CONFIG.json[:LIMITS.json]]... [--model NAME]\n\n"+
		"Uploads a pipeline (pre modules in the order given, then the model, then post modules) and prints its id.\n"+
		moduleSpecHelp+" The same pipeline pushed twice has the same id,\n"+
		"the one `cocoon pipeline-id` computes without a host.", stderr)
	var pre, post moduleFlags
	fs.Var(&pre, "pre", "a pre module and its optional config and limits files, repeatable")
	fs.Var(&post, "post", "a post module and its optional config and limits files, repeatable")
	model := fs.String("model", "", "the model the pipeline serves (default: the host's first model)")
	verbose := fs.Bool("verbose", false, "also print each module's hash and the pipeline's base URL (to stderr)")
	newClient := hostFlags(fs)
	if err := cli.ParseFlags(fs, args); err != nil {
		return err
	}
	if len(pre)+len(post) == 0 {
		return cli.UsageError("no module given: use --pre FILE.wasm and/or --post FILE.wasm")
	}
	c, err := newClient()
	if err != nil {
		return err
	}
	files, err := readPipelineFiles(pre, post)
	if err != nil {
		return err
	}
	ctx := context.Background()
	if *model == "" {
		if *model, err = firstModel(ctx, c); err != nil {
			return err
		}
	}
	m, err := files.manifest(*model)
	if err != nil {
		return err
	}
	upload := struct {
		Manifest *host.Manifest    `json:"manifest"`
		Modules  map[string]string `json:"modules"`
	}{m, map[string]string{}}
	for hash, wasm := range files.wasm {
		upload.Modules[hash] = base64.StdEncoding.EncodeToString(wasm)
	}
	var p pipelineInfo
	if err := c.call(ctx, http.MethodPost, "/v1/pipelines", upload, &p); err != nil {
		return err
	}
	if *verbose {
		for _, h := range p.Modules {
			fmt.Fprintf(stderr, "%s  %s\n", h, files.names[h])
		}
		fmt.Fprintf(stderr, "model %s; base URL for OpenAI SDKs: %s%s\n", m.Model, c.base, p.BaseURL)
	}
	_, err = fmt.Fprintln(stdout, p.ID)
	return err
}

// pipelineFiles is a pipeline's modules as read from the files of --pre and --post
// values: what push uploads and pipeline-id hashes, so that both give one id.
type pipelineFiles struct {
	pre, post []host.ManifestModule
	wasm      map[string][]byte // module hash → its bytes
	names     map[string]string // module hash → its file
}

// readPipelineFiles reads the modules, configs and limits that pre and post name
// (FILE.wasm[:CONFIG.json[:LIMITS.json]] each). A config must be JSON, limits a JSON
// object of abi.Limits members; whether they are within a host's bounds is checked by
// manifest.
func readPipelineFiles(pre, post moduleFlags) (*pipelineFiles, error) {
	p := &pipelineFiles{wasm: map[string][]byte{}, names: map[string]string{}}
	read := func(specs moduleFlags) ([]host.ManifestModule, error) {
		mms := []host.ManifestModule{}
		for _, spec := range specs {
			file, rest, _ := strings.Cut(spec, ":")
			configFile, limitsFile, _ := strings.Cut(rest, ":")
			wasm, err := os.ReadFile(file)
			if err != nil {
				return nil, err
			}
			mm := host.ManifestModule{Module: host.HashOf(wasm)}
			if configFile != "" {
				if mm.Config, err = os.ReadFile(configFile); err != nil {
					return nil, err
				}
				if !json.Valid(mm.Config) {
					return nil, fmt.Errorf("config %s of %s is not valid JSON", configFile, file)
				}
			}
			if limitsFile != "" {
				b, err := os.ReadFile(limitsFile)
				if err != nil {
					return nil, err
				}
				if err := strictjson.Decode(b, &mm.Limits); err != nil {
					return nil, fmt.Errorf("limits %s of %s: %w", limitsFile, file, err)
				}
			}
			p.wasm[mm.Module], p.names[mm.Module] = wasm, file
			mms = append(mms, mm)
		}
		return mms, nil
	}
	var err error
	if p.pre, err = read(pre); err != nil {
		return nil, err
	}
	if p.post, err = read(post); err != nil {
		return nil, err
	}
	return p, nil
}

// manifest returns the manifest of these modules around model, checked as a host
// checks an upload (host.ParseManifest), so that its id is the one a host gives it.
func (p *pipelineFiles) manifest(model string) (*host.Manifest, error) {
	b, err := json.Marshal(host.Manifest{ABIVersion: abi.Version, Model: model, Pre: p.pre, Post: p.post})
	if err != nil {
		return nil, err
	}
	return host.ParseManifest(b)
}

// firstModel returns the first model the host serves.
func firstModel(ctx context.Context, c *client) (string, error) {
	var models struct {
		Data []struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	if err := c.call(ctx, http.MethodGet, "/v1/models", nil, &models); err != nil {
		return "", err
	}
	if len(models.Data) == 0 {
		return "", fmt.Errorf("the host at %s serves no model", c.base)
	}
	return models.Data[0].ID, nil
}
