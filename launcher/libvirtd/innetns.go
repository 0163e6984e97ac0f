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

package libvirtd

import (
	"fmt"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// InNetns runs fn on a thread that has entered the named network
// namespace: sockets fn opens belong to it (and stay there, whichever
// thread uses them later). The thread is never handed back to other
// goroutines: it ends with fn.
func InNetns(name string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		// No UnlockOSThread: a locked thread whose goroutine ends is
		// terminated, rather than reused in the wrong namespace.
		runtime.LockOSThread()
		f, err := os.Open(netnsPath(name))
		if err != nil {
			errc <- fmt.Errorf("network namespace %s: %w", name, err)
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("enter network namespace %s: %w", name, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}
