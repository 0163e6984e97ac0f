/*
Copyright The Vessel Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

package app

import (
	"io"
	"os"
	"sync"

	"golang.org/x/term"
)

// terminal puts the user's terminal in raw mode for a console session, so
// keys (Ctrl+C included) go to the guest, and puts it back exactly once.
type terminal struct {
	fd    int
	raw   bool
	mu    sync.Mutex
	state *term.State
}

// newTerminal is a no-op terminal unless in and out are both terminals.
func newTerminal(in io.Reader, out io.Writer) *terminal {
	f, ok := in.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return &terminal{}
	}
	if o, ok := out.(*os.File); !ok || !term.IsTerminal(int(o.Fd())) {
		return &terminal{}
	}
	return &terminal{fd: int(f.Fd()), raw: true}
}

func (t *terminal) makeRaw() error {
	if !t.raw {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	state, err := term.MakeRaw(t.fd)
	if err != nil {
		return err
	}
	t.state = state
	return nil
}

// newline ends a line on the terminal, raw or not.
func (t *terminal) newline() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.state != nil {
		return "\r\n"
	}
	return "\n"
}

func (t *terminal) restore() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.state != nil {
		_ = term.Restore(t.fd, t.state)
		t.state = nil
	}
}
