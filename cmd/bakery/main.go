// Command bakery builds golden images for Raspberry Pis and VMs, flashes
// them, and netboots them. Every subcommand is a thin shell over a library
// package under internal/.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := newRootCommand().ExecuteContext(ctx)
	if err == nil {
		return
	}
	var exit *exitError
	if errors.As(err, &exit) {
		if exit.msg != "" {
			fmt.Fprintln(os.Stderr, "bakery:", exit.msg)
		}
		os.Exit(exit.code)
	}
	fmt.Fprintln(os.Stderr, "bakery:", err)
	if ctx.Err() != nil {
		os.Exit(130)
	}
	os.Exit(1)
}

// exitError ends the program with a specific code, e.g. audit's 1 on
// findings, after the command has printed its own output.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string {
	if e.msg != "" {
		return e.msg
	}
	return fmt.Sprintf("exit status %d", e.code)
}
