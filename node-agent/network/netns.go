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

package network

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
)

// NetnsPath resolves --network-namespace: empty is the agent's own
// namespace, a name is one of ip-netns(8)'s, anything with a slash a path.
func NetnsPath(nameOrPath string) string {
	if nameOrPath == "" || strings.Contains(nameOrPath, "/") {
		return nameOrPath
	}
	return filepath.Join("/run/netns", nameOrPath)
}

// runner runs a command in the network's namespace.
type runner func(ctx context.Context, stdin io.Reader, argv ...string) (string, error)

// nsenterRunner runs commands in the namespace at path (the agent's own
// when empty) through nsenter.
func nsenterRunner(path string) runner {
	return func(ctx context.Context, stdin io.Reader, argv ...string) (string, error) {
		if path != "" {
			argv = append([]string{"nsenter", "--net=" + path, "--"}, argv...)
		}
		cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
		cmd.Stdin = stdin
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Run(); err != nil {
			return out.String(), fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, strings.TrimSpace(errb.String()))
		}
		return out.String(), nil
	}
}
