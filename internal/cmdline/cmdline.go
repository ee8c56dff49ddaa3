// Package cmdline is what the admin commands (cmd/apikeys, cmd/limits)
// share: usage errors, the exit status an error maps to, JSON output.
package cmdline

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
)

// UsageError is a mistake on the command line: exit status 2, with the
// usage text.
type UsageError struct{ Msg string }

func (e UsageError) Error() string { return e.Msg }

// Usagef returns a UsageError with a formatted message.
func Usagef(format string, args ...any) error {
	return UsageError{fmt.Sprintf(format, args...)}
}

// Exit prints what err says to stderr, prefixed with the command's name,
// and returns the exit status: 0 for nil and for flag.ErrHelp (which prints
// usage), 2 for a UsageError (message, then usage), 1 otherwise.
func Exit(name, usage string, err error, stderr io.Writer) int {
	var ue UsageError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprint(stderr, usage)
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "%s: %s\n%s", name, ue.Msg, usage)
		return 2
	default:
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 1
	}
}

// WriteJSON writes v to w as one line of JSON, with <, > and & as they
// are (the output is for terminals and jq, not HTML).
func WriteJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}
