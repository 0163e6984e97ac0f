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

package console

import (
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"strconv"

	"github.com/vessel-vm/vessel/node-agent/hypervisor"
)

// serveLogs answers GET /logs/{namespace}/{name}/{uid}?tailBytes=N with
// recent console output: the VM's ring when a console stream is open
// (it starts from virtlogd's log and follows the stream), otherwise the
// tail of virtlogd's log file, which survives agent restarts. tailBytes 0
// or absent means all the ring would hold.
func (s *Server) serveLogs(w http.ResponseWriter, r *http.Request) {
	ref, err := parseRef(r)
	if err != nil {
		writeStatus(w, http.StatusBadRequest, "BadRequest", err.Error())
		return
	}
	limit := s.cfg.RingBytes
	if v := r.URL.Query().Get("tailBytes"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			writeStatus(w, http.StatusBadRequest, "BadRequest", fmt.Sprintf("tailBytes must be a non-negative integer, got %q", v))
			return
		}
		if n > 0 {
			limit = int(min(n, int64(s.cfg.RingBytes)))
		}
	}
	// A stopped VM's domain stays defined, and its log is most useful then;
	// a VM whose domain is gone may still have its log. Only a domain that
	// belongs to someone else is refused.
	d, err := s.cfg.Domains.Lookup(r.Context(), ref.uid)
	switch {
	case err == nil && d.Owner.Key() != ref.String(), errors.Is(err, hypervisor.ErrNotOwned):
		writeStatus(w, http.StatusNotFound, "NotFound", fmt.Sprintf("VM %s has no domain on this host", ref))
		return
	case err != nil && !errors.Is(err, hypervisor.ErrNotFound):
		writeStatus(w, http.StatusServiceUnavailable, "ServiceUnavailable", fmt.Sprintf("look up the domain of VM %s: %v", ref, err))
		return
	}
	var out []byte
	if h := s.existingHub(ref.uid); h != nil {
		out = h.Tail(limit)
	}
	if len(out) == 0 {
		out, err = readTail(s.logPath(ref.uid), limit)
		if errors.Is(err, fs.ErrNotExist) {
			writeStatus(w, http.StatusNotFound, "NotFound", fmt.Sprintf("VM %s has no console log on this host", ref))
			return
		}
		if err != nil {
			writeStatus(w, http.StatusInternalServerError, "InternalError", fmt.Sprintf("read the console log of VM %s: %v", ref, err))
			return
		}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	_, _ = w.Write(out)
}
