package main

import (
	"fmt"
	"io"
)

func deadletters(args, environ []string, stdout, stderr io.Writer) int {
	fmt.Fprintln(stderr, "voipbridge deadletters: not available yet")
	return 2
}
