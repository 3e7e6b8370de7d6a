package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/cocoonhost/cocoon/abi"
	"github.com/cocoonhost/cocoon/cmd/internal/cli"
	"github.com/cocoonhost/cocoon/host"
)

// run executes one hook of one module in the same sandbox, with the same limits, as a
// host does, so a module author sees locally exactly what the host will do.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := cli.NewFlagSet("cocoon", `run FILE.wasm --hook pre|post|chunk [flags] < input

Runs one hook of a module in the host's sandbox and prints its output; the module's
logs go to stderr. Input on stdin:
  pre    a chat completion request (JSON)
  post   a chat.completion response (JSON)
  chunk  text: each line (with its newline) is one streamed delta, then cocoon_end
`, stderr)
	hook := fs.String("hook", "", "the hook to run: pre, post or chunk")
	configFile := fs.String("config", "", "read the module's config from this file")
	configJSON := fs.String("config-json", "", "the module's config, inline")
	timeMS := fs.Int("time-ms", 0, fmt.Sprintf("time limit per call in ms (default %d)", time.Duration(abi.DefaultLimits.CallTimeout).Milliseconds()))
	memoryPages := fs.Uint("memory-pages", 0, fmt.Sprintf("memory limit in 64 KiB pages (default %d)", abi.DefaultLimits.MemoryPages))
	files, err := cli.Parse(fs, args)
	if err != nil {
		return err
	}
	if len(files) != 1 {
		return cli.UsageError("give exactly one module file")
	}
	if *hook != "pre" && *hook != "post" && *hook != "chunk" {
		return cli.UsageError(fmt.Sprintf("--hook must be pre, post or chunk, not %q", *hook))
	}
	var config []byte
	switch {
	case *configFile != "" && *configJSON != "":
		return cli.UsageError("give --config or --config-json, not both")
	case *configFile != "":
		if config, err = os.ReadFile(*configFile); err != nil {
			return err
		}
	case *configJSON != "":
		config = []byte(*configJSON)
	}
	wasm, err := os.ReadFile(files[0])
	if err != nil {
		return err
	}

	ctx := context.Background()
	sandbox, err := host.NewSandbox(ctx, host.NewSandboxConfig())
	if err != nil {
		return err
	}
	defer sandbox.Close(ctx)
	m, err := sandbox.Compile(ctx, wasm)
	if err != nil {
		return err
	}
	spec := host.ModuleSpec{Module: m, Config: config,
		Limits: abi.Limits{CallTimeout: abi.Duration(time.Duration(*timeMS) * time.Millisecond), MemoryPages: uint32(*memoryPages)}}
	var pipelineSpec host.PipelineSpec
	if *hook == "pre" {
		pipelineSpec.Pre = []host.ModuleSpec{spec}
	} else {
		pipelineSpec.Post = []host.ModuleSpec{spec}
	}
	p, err := sandbox.NewPipeline(pipelineSpec)
	if err != nil {
		return err
	}
	sess := p.NewSession(ctx)
	defer sess.Close()
	err = runHook(sess, *hook, stdin, stdout)
	for _, r := range sess.Logs() {
		fmt.Fprintf(stderr, "%s %s: %s\n", r.Level, r.Source, r.Message)
	}
	var e *host.Error
	if errors.As(err, &e) {
		if e.Code == host.CodeRejected {
			return fmt.Errorf("rejected with status %d: %s", e.Status, e.Message)
		}
		return fmt.Errorf("%s (%s)", e.Message, e.Code)
	}
	return err
}

func runHook(sess *host.Session, hook string, stdin io.Reader, stdout io.Writer) error {
	if hook == "chunk" {
		in := bufio.NewReader(stdin)
		for {
			line, err := in.ReadString('\n')
			if line != "" {
				out, err := sess.Chunk(line)
				if err != nil {
					return err
				}
				io.WriteString(stdout, out)
			}
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return err
			}
		}
		out, err := sess.End()
		io.WriteString(stdout, out)
		return err
	}
	input, err := io.ReadAll(io.LimitReader(stdin, int64(abi.CeilingLimits.InputBytes)+1))
	if err != nil {
		return err
	}
	var out []byte
	if hook == "pre" {
		out, err = sess.Pre(input)
	} else {
		out, err = sess.Post(input)
	}
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "%s\n", out)
	return err
}
