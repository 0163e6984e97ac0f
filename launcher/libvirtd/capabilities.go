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
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/vessel-vm/vessel/launcher/internal/atomicfile"
)

// DefaultCapabilitiesSeed is where the launcher keeps the machine's copy of
// a QEMU capabilities cache for new hosts (see Host.CapabilitiesSeed).
const DefaultCapabilitiesSeed = "/var/cache/vessel/qemu-capabilities"

// seedCapabilities copies the seed into a host whose cache is empty.
func (h Host) seedCapabilities() error {
	if h.CapabilitiesSeed == "" {
		return nil
	}
	if have, err := cacheFiles(h.capabilitiesDir()); err != nil || len(have) > 0 {
		return err
	}
	seed, err := cacheFiles(h.CapabilitiesSeed)
	if err != nil || len(seed) == 0 {
		return err
	}
	if err := os.MkdirAll(h.capabilitiesDir(), 0o700); err != nil {
		return fmt.Errorf("seed the QEMU capabilities of libvirt host %s: %w", h.Name, err)
	}
	for name, data := range seed {
		if err := atomicfile.Write(filepath.Join(h.capabilitiesDir(), name), data, 0o600); err != nil {
			return fmt.Errorf("seed the QEMU capabilities of libvirt host %s: %w", h.Name, err)
		}
	}
	return nil
}

// SaveCapabilities makes the host's QEMU capabilities cache, which its
// libvirtd has checked (or probed afresh) by the time it answers Ping, the
// seed for hosts to come. A seed that is the same already is left alone.
func (h Host) SaveCapabilities() error {
	if h.CapabilitiesSeed == "" {
		return nil
	}
	have, err := cacheFiles(h.capabilitiesDir())
	if err != nil || len(have) == 0 {
		return err
	}
	seed, err := cacheFiles(h.CapabilitiesSeed)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(h.CapabilitiesSeed, 0o755); err != nil {
		return fmt.Errorf("save the QEMU capabilities seed: %w", err)
	}
	for name, data := range have {
		if bytes.Equal(seed[name], data) {
			continue
		}
		if err := atomicfile.Write(filepath.Join(h.CapabilitiesSeed, name), data, 0o600); err != nil {
			return fmt.Errorf("save the QEMU capabilities seed: %w", err)
		}
	}
	for name := range seed {
		if _, ok := have[name]; !ok {
			_ = os.Remove(filepath.Join(h.CapabilitiesSeed, name))
		}
	}
	return nil
}

// cacheFiles reads the capabilities files (<sha256 of the QEMU binary>.xml)
// of a cache directory; a missing directory has none.
func cacheFiles(dir string) (map[string][]byte, error) {
	matches, err := filepath.Glob(filepath.Join(dir, "*.xml"))
	if err != nil {
		return nil, err
	}
	files := map[string][]byte{}
	for _, m := range matches {
		data, err := os.ReadFile(m)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read QEMU capabilities: %w", err)
		}
		files[filepath.Base(m)] = data
	}
	return files, nil
}
