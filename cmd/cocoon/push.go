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
)

// moduleFlags collects repeated --pre or --post values: FILE.wasm[:CONFIG.json].
type moduleFlags []string

func (m *moduleFlags) String() string     { return strings.Join(*m, " ") }
func (m *moduleFlags) Set(v string) error { *m = append(*m, v); return nil }

// push uploads a pipeline in the format of POST /v1/pipelines (see package web) and
// prints its id.
func push(args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := cli.NewFlagSet("cocoon", "push --pre FILE.wasm[:CONFIG.json]... --post FILE.wasm[:CONFIG.json]... [--model NAME]\n\n"+
		"Uploads a pipeline (pre modules in the order given, then the model, then post modules) and prints its id.\n"+
		"A module's config is the JSON in CONFIG.json; the same pipeline pushed twice has the same id.", stderr)
	var pre, post moduleFlags
	fs.Var(&pre, "pre", "a pre module and its optional config file, repeatable")
	fs.Var(&post, "post", "a post module and its optional config file, repeatable")
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
	upload := struct {
		Manifest host.Manifest     `json:"manifest"`
		Modules  map[string]string `json:"modules"`
	}{host.Manifest{ABIVersion: abi.Version, Model: *model}, map[string]string{}}
	files := map[string]string{} // hash → file, for --verbose
	stage := func(specs moduleFlags) ([]host.ManifestModule, error) {
		mms := []host.ManifestModule{}
		for _, spec := range specs {
			file, configFile, _ := strings.Cut(spec, ":")
			wasm, err := os.ReadFile(file)
			if err != nil {
				return nil, err
			}
			mm := host.ManifestModule{Module: host.HashOf(wasm)}
			if configFile != "" {
				cfg, err := os.ReadFile(configFile)
				if err != nil {
					return nil, err
				}
				if !json.Valid(cfg) {
					return nil, fmt.Errorf("config %s of %s is not valid JSON", configFile, file)
				}
				mm.Config = cfg
			}
			upload.Modules[mm.Module] = base64.StdEncoding.EncodeToString(wasm)
			files[mm.Module] = file
			mms = append(mms, mm)
		}
		return mms, nil
	}
	if upload.Manifest.Pre, err = stage(pre); err != nil {
		return err
	}
	if upload.Manifest.Post, err = stage(post); err != nil {
		return err
	}
	ctx := context.Background()
	if upload.Manifest.Model == "" {
		if upload.Manifest.Model, err = firstModel(ctx, c); err != nil {
			return err
		}
	}
	var p pipelineInfo
	if err := c.call(ctx, http.MethodPost, "/v1/pipelines", upload, &p); err != nil {
		return err
	}
	if *verbose {
		for _, h := range p.Modules {
			fmt.Fprintf(stderr, "%s  %s\n", h, files[h])
		}
		fmt.Fprintf(stderr, "model %s; base URL for OpenAI SDKs: %s%s\n", upload.Manifest.Model, c.base, p.BaseURL)
	}
	_, err = fmt.Fprintln(stdout, p.ID)
	return err
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
