//go:build js

// This file is added to a copy of github.com/google/logger by web/page/build.sh, for the
// browser build of the verifier only. go-tdx-guest's verifier logs through that package,
// whose Init refers to a syslog (or Windows event log) setup defined for neither js nor
// wasip1, so it does not compile for the browser. In a browser there is no system log:
// setup gives none, and logging goes to the console as on any system where
// Init's systemLog is false. Nothing else of the package changes.

package logger

import "io"

func setup(string) (io.Writer, io.Writer, io.Writer, error) { return nil, nil, nil, nil }
