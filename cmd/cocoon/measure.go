package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/cocoonhost/cocoon/abi"
	"github.com/cocoonhost/cocoon/attest/weights"
	"github.com/cocoonhost/cocoon/cmd/internal/cli"
	"github.com/cocoonhost/cocoon/host"
)

// measure prints "sha256:<hex>  FILE" for each file: the identity a host reports for a
// module, so a reviewer can rebuild a module from source and compare. With --weights it
// prints a weights folder's identity, as `cocoon-host serve --model-weights` measures it.
func measure(args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := cli.NewFlagSet("cocoon", `measure FILE.wasm...
measure --weights DIR...

Prints sha256:<hex> of each file's raw bytes, the module identity hosts report. With
--weights, prints sha256-tree:<hex> of each model weights folder (every file in it, as
attest/weights specifies), the model identity a host serving from that folder reports
(cocoon-host serve --model-weights).`, stderr)
	folders := fs.Bool("weights", false, "the arguments are model weights folders")
	files, err := cli.Parse(fs, args)
	if err != nil {
		return err
	}
	if len(files) == 0 {
		return cli.UsageError("no file given")
	}
	for _, f := range files {
		if *folders {
			m, err := weights.Measure(f, 0)
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "%s  %s\n", m.Root, f)
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s  %s\n", host.HashOf(b), f)
	}
	return nil
}

// validate checks each file as a host does at upload: against the ABI, then by
// compiling it. It prints what a valid module declares.
func validate(args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := cli.NewFlagSet("cocoon", "validate FILE.wasm...\n\nChecks modules against the host ABI and compiles them, as an upload does.", stderr)
	files, err := cli.Parse(fs, args)
	if err != nil {
		return err
	}
	if len(files) == 0 {
		return cli.UsageError("no file given")
	}
	ctx := context.Background()
	sandbox, err := host.NewSandbox(ctx, host.NewSandboxConfig())
	if err != nil {
		return err
	}
	defer sandbox.Close(ctx)
	failed := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		m, err := sandbox.Compile(ctx, b)
		if err != nil {
			fmt.Fprintf(stdout, "%s: invalid: %v\n", f, err)
			failed++
			continue
		}
		fmt.Fprintf(stdout, "%s: ok: ABI v%d, hooks %s, memory %d pages at start, %s\n", f, m.Info.ABIVersion, m.Info.Hooks, m.Info.MemoryMinPages, importsSummary(m.Info.Imports))
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d modules are invalid", failed, len(files))
	}
	return nil
}

// importsSummary lists the functions a module imports, each once, in the order of its
// first import: a module may import one function twice (Go's toolchain imports
// fd_write twice, for two call sites), which is one function to a reader.
func importsSummary(imports []abi.Import) string {
	if len(imports) == 0 {
		return "no imports"
	}
	var names []string
	seen := make(map[abi.Import]bool, len(imports))
	for _, im := range imports {
		if !seen[im] {
			seen[im] = true
			names = append(names, im.Module+"."+im.Name)
		}
	}
	return "imports " + strings.Join(names, ", ")
}
