// Package cli is the small command-line framework of cocoon and cocoon-host:
// subcommands with their own flag sets, --help everywhere, and exit codes that tell a
// usage mistake (2) from a failure (1).
package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
)

// Command is one subcommand. Run parses its own flags from args.
type Command struct {
	Name    string
	Summary string
	Run     func(args []string, stdin io.Reader, stdout, stderr io.Writer) error
}

// UsageError is a command line that cannot be run as written; Main prints it and
// exits with 2.
type UsageError string

func (e UsageError) Error() string { return string(e) }

// Main runs the command named by args[0] and returns the process exit code: 0 on
// success or --help, 1 on failure, 2 on a usage error. about is the first line of the
// program's help.
func Main(program, about string, commands []Command, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr, program, about, commands)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range commands {
		if c.Name != args[0] {
			continue
		}
		err := c.Run(args[1:], stdin, stdout, stderr)
		var ue UsageError
		switch {
		case err == nil, errors.Is(err, flag.ErrHelp):
			return 0
		case errors.As(err, &ue):
			fmt.Fprintf(stderr, "%s %s: %v\n", program, c.Name, err)
			return 2
		default:
			fmt.Fprintf(stderr, "%s %s: %v\n", program, c.Name, err)
			return 1
		}
	}
	fmt.Fprintf(stderr, "%s: unknown command %q\n\n", program, args[0])
	usage(stderr, program, about, commands)
	return 2
}

func usage(w io.Writer, program, about string, commands []Command) {
	fmt.Fprintf(w, "%s\n\nUsage: %s COMMAND [flags] [args]\n\nCommands:\n", about, program)
	for _, c := range commands {
		fmt.Fprintf(w, "  %-10s %s\n", c.Name, c.Summary)
	}
	fmt.Fprintf(w, "\nRun '%s COMMAND --help' for a command's flags.\n", program)
}

// NewFlagSet returns a flag set for "program usageText" that reports errors instead
// of exiting, and prints usageText and the flags on --help.
func NewFlagSet(program, usageText string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(program, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: %s %s\n", program, usageText)
		fs.PrintDefaults()
	}
	return fs
}

// Parse parses flags that may come before or after positional arguments, as in
// `cocoon run FILE.wasm --hook pre`, and returns the positional ones. Flag errors are
// UsageErrors; --help returns flag.ErrHelp.
func Parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, UsageError(err.Error())
		}
		if fs.NArg() == 0 {
			return positional, nil
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// ParseFlags is Parse for commands that take no positional arguments.
func ParseFlags(fs *flag.FlagSet, args []string) error {
	positional, err := Parse(fs, args)
	if err == nil && len(positional) > 0 {
		err = UsageError(fmt.Sprintf("unexpected argument %q", positional[0]))
	}
	return err
}

// SecretFlag defines a string flag for a secret, such as an API key, whose default is
// the environment variable env. Its help names the variable, never its value (a flag's
// default is printed by --help, which lands in terminals and logs). The returned
// function, called once fs is parsed, gives the flag's value, or the variable's when the
// flag is not given or empty.
func SecretFlag(fs *flag.FlagSet, name, env, usage string) func() string {
	v := fs.String(name, "", usage+" (default $"+env+")")
	return func() string {
		if *v != "" {
			return *v
		}
		return os.Getenv(env)
	}
}
