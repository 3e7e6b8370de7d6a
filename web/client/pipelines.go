package client

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"

	"github.com/cocoonhost/cocoon/abi"
	"github.com/cocoonhost/cocoon/host"
	"github.com/cocoonhost/cocoon/internal/strictjson"
)

// Pipeline is a pipeline as the host shows it.
type Pipeline struct {
	ID string `json:"id"`
	// BaseURL is the path OpenAI SDKs take as their base URL, relative to the host's.
	BaseURL  string          `json:"base_url"`
	Manifest json.RawMessage `json:"manifest"`
	// Modules are the hashes of its modules, pre then post, in order.
	Modules []string `json:"modules"`
}

// PipelineFiles is a pipeline's modules as read from files: what Push uploads and
// what its id is computed from, so that both give one id.
type PipelineFiles struct {
	Pre, Post []host.ManifestModule
	Wasm      map[string][]byte // module hash → its bytes
	Names     map[string]string // module hash → its file
}

// ReadPipelineFiles reads the modules, configs and limits that pre and post name, each
// "FILE.wasm[:CONFIG.json[:LIMITS.json]]". A config must be JSON, limits a JSON object
// of abi.Limits members (strict: an unknown member fails); whether they are within a
// host's bounds is checked by Manifest. It reads every file whole.
func ReadPipelineFiles(pre, post []string) (*PipelineFiles, error) {
	p := &PipelineFiles{Wasm: map[string][]byte{}, Names: map[string]string{}}
	read := func(specs []string) ([]host.ManifestModule, error) {
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
					return nil, &Error{Code: CodeInvalid, Message: fmt.Sprintf("config %s of %s is not valid JSON", configFile, file)}
				}
			}
			if limitsFile != "" {
				b, err := os.ReadFile(limitsFile)
				if err != nil {
					return nil, err
				}
				if err := strictjson.Decode(b, &mm.Limits); err != nil {
					return nil, &Error{Code: CodeInvalid, Err: err, Message: fmt.Sprintf("limits %s of %s: %v", limitsFile, file, err)}
				}
			}
			p.Wasm[mm.Module], p.Names[mm.Module] = wasm, file
			mms = append(mms, mm)
		}
		return mms, nil
	}
	var err error
	if p.Pre, err = read(pre); err != nil {
		return nil, err
	}
	if p.Post, err = read(post); err != nil {
		return nil, err
	}
	return p, nil
}

// Manifest returns the manifest of these modules around model, checked as a host
// checks an upload (host.ParseManifest), so that its id is the one a host gives it.
func (p *PipelineFiles) Manifest(model string) (*host.Manifest, error) {
	b, err := json.Marshal(host.Manifest{ABIVersion: abi.Version, Model: model, Pre: p.Pre, Post: p.Post})
	if err != nil {
		return nil, err
	}
	return host.ParseManifest(b)
}

// Push uploads the pipeline of manifest m with its modules' bytes (POST /v1/pipelines;
// wasm maps each module hash to its bytes) and returns it as the host shows it. The
// upload is content-addressed: the same manifest has the same id on every host. It
// sends every module whole, base64 in JSON, once: an upload is not retried.
func (c *Client) Push(ctx context.Context, m *host.Manifest, wasm map[string][]byte) (*Pipeline, error) {
	upload := struct {
		Manifest *host.Manifest    `json:"manifest"`
		Modules  map[string]string `json:"modules"`
	}{m, map[string]string{}}
	for hash, b := range wasm {
		upload.Modules[hash] = base64.StdEncoding.EncodeToString(b)
	}
	var p Pipeline
	if err := c.call(ctx, http.MethodPost, "/v1/pipelines", upload, &p); err != nil {
		return nil, err
	}
	return &p, nil
}

// FirstModel returns the first model the host serves (GET /v1/models).
func (c *Client) FirstModel(ctx context.Context) (string, error) {
	var models struct {
		Data []struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	if err := c.call(ctx, http.MethodGet, "/v1/models", nil, &models); err != nil {
		return "", err
	}
	if len(models.Data) == 0 {
		return "", &Error{Code: CodeBadAnswer, Message: fmt.Sprintf("the host at %s serves no model", c.base)}
	}
	return models.Data[0].ID, nil
}

// ListedPipeline is one entry of the host's list of pipelines.
type ListedPipeline struct {
	ID       string        `json:"id"`
	Manifest host.Manifest `json:"manifest"`
}

// Pipelines lists the host's pipelines (GET /v1/pipelines).
func (c *Client) Pipelines(ctx context.Context) ([]ListedPipeline, error) {
	var list struct {
		Data []ListedPipeline `json:"data"`
	}
	if err := c.call(ctx, http.MethodGet, "/v1/pipelines", nil, &list); err != nil {
		return nil, err
	}
	return list.Data, nil
}

// Pipeline returns the pipeline id (64 hex digits) as the host shows it.
func (c *Client) Pipeline(ctx context.Context, id string) (*Pipeline, error) {
	var p Pipeline
	if err := c.call(ctx, http.MethodGet, "/v1/pipelines/"+id, nil, &p); err != nil {
		return nil, err
	}
	return &p, nil
}

// DeletePipeline withdraws the API key's ownership of pipeline id; it reports whether
// the host removed the pipeline (no owner left) rather than only the key's ownership.
func (c *Client) DeletePipeline(ctx context.Context, id string) (deleted bool, err error) {
	var answer struct {
		Deleted bool `json:"deleted"`
	}
	if err := c.call(ctx, http.MethodDelete, "/v1/pipelines/"+id, nil, &answer); err != nil {
		return false, err
	}
	return answer.Deleted, nil
}

// FailedRequests returns the module logs of pipeline id's recent failed requests,
// oldest first; only its owners may read them.
func (c *Client) FailedRequests(ctx context.Context, id string) ([]host.FailedRequest, error) {
	var answer struct {
		Data []host.FailedRequest `json:"data"`
	}
	if err := c.call(ctx, http.MethodGet, "/v1/pipelines/"+id+"/logs", nil, &answer); err != nil {
		return nil, err
	}
	return answer.Data, nil
}
