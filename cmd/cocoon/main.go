// Command cocoon is the client CLI of Cocoon host for module authors and reviewers.
//
//	cocoon measure FILE.wasm...     print each module's identity, sha256:<hex> of its bytes
//	cocoon validate FILE.wasm...    check modules against the host ABI, as an upload would
//	cocoon run FILE.wasm --hook pre|post|chunk < input
//	                                run a module in the host's own sandbox
//
// Run `cocoon COMMAND --help` for a command's flags.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
)

// command is one subcommand: it parses its own flags from args.
type command struct {
	name    string
	summary string
	run     func(args []string, stdin io.Reader, stdout, stderr io.Writer) error
}

var commands = []command{
	{"measure", "print the sha256: identity of modules", measure},
	{"validate", "check modules against the host ABI", validate},
	{"run", "run a module's hook in the host's sandbox", run},
}

func main() {
	os.Exit(cli(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// cli runs one command line and returns the process exit code: 0 on success, 1 on a
// failure, 2 on a usage error.
func cli(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range commands {
		if c.name == args[0] {
			err := c.run(args[1:], stdin, stdout, stderr)
			switch {
			case err == nil:
				return 0
			case errors.Is(err, flag.ErrHelp):
				return 0
			case errors.As(err, new(usageError)):
				fmt.Fprintf(stderr, "cocoon %s: %v\n", c.name, err)
				return 2
			default:
				fmt.Fprintf(stderr, "cocoon %s: %v\n", c.name, err)
				return 1
			}
		}
	}
	fmt.Fprintf(stderr, "cocoon: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "cocoon: the Cocoon host client for module authors and reviewers.")
	fmt.Fprintln(w, "\nUsage: cocoon COMMAND [flags] [args]\n\nCommands:")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun 'cocoon COMMAND --help' for a command's flags.")
}

// usageError is a command line that cannot be run as written.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// parseArgs parses flags that may come before or after the positional arguments, as in
// `cocoon run FILE.wasm --hook pre`, and returns the positional ones.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, usageError{err.Error()}
		}
		if fs.NArg() == 0 {
			return positional, nil
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

func newFlagSet(name, usageLine string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: cocoon %s\n", usageLine)
		fs.PrintDefaults()
	}
	return fs
}
