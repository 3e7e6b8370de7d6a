// Command cocoon-host is the Cocoon host daemon that runs inside the confidential VM.
//
//	cocoon-host serve [--listen ADDR] [--data DIR] [--model-dir DIR]   run the host
//	cocoon-host generate --model-dir DIR [flags]   check a model: generate text, print tokens/s
//	cocoon-host model pull [--data DIR]            download the default model with sha256 checks
//	cocoon-host backend --kind embedded            serve a built-in backend to the host (run by the host)
//	cocoon-host version (or --version)             print the version and this binary's measurement
//
// Run `cocoon-host help COMMAND` for a command's flags.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"sort"

	"github.com/cocoonhost/cocoon/cmd/internal/cli"
)

// commands are registered by each command's file in init.
var commands []cli.Command

// register adds a command; cocoon-host's commands read no standard input.
func register(name, summary string, run func(args []string, stdout, stderr io.Writer) error) {
	commands = append(commands, cli.Command{Name: name, Summary: summary,
		Run: func(args []string, _ io.Reader, stdout, stderr io.Writer) error { return run(args, stdout, stderr) }})
	sort.Slice(commands, func(i, j int) bool { return commands[i].Name < commands[j].Name })
}

func main() {
	os.Exit(runCommand(os.Args[1:], os.Stdout, os.Stderr))
}

// runCommand runs one command line and returns the exit code: 0 success, 1 failure,
// 2 usage error. Every command first forbids core dumps: the host's memory holds its
// keys, and a command that cannot guarantee that fails.
func runCommand(args []string, stdout, stderr io.Writer) int {
	if err := forbidCoreDumps(); err != nil {
		fmt.Fprintf(stderr, "cocoon-host: cannot forbid core dumps, which would hold this process's keys: %v\n", err)
		return 1
	}
	return cli.Main("cocoon-host", "cocoon-host: the Cocoon host daemon.", commands, args, nil, stdout, stderr)
}

func newFlagSet(usageText string, stderr io.Writer) *flag.FlagSet {
	return cli.NewFlagSet("cocoon-host", usageText, stderr)
}
