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
	"context"
	"io"
	"net/http"
	"time"

	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
)

// spdyIdleTimeout closes an SPDY connection without any frame for this
// long; the kubelet's default. client-go's SPDY clients ping every 5 s.
const spdyIdleTimeout = 4 * time.Hour

// serveSPDY serves the SPDY remote-command protocols with the upstream
// CRI streaming server's attach handler.
func (s *Server) serveSPDY(w http.ResponseWriter, r *http.Request, session *Session, opts AttachOptions) {
	streams := &remotecommand.Options{Stdin: !opts.ReadOnly, Stdout: true, TTY: true}
	remotecommand.ServeAttach(w, r, attacher{session: session, opts: opts}, "", "", "", streams,
		spdyIdleTimeout, remotecommand.DefaultStreamCreationTimeout, remotecommand.SupportedStreamingProtocols)
}

// attacher serves an SPDY client its session.
type attacher struct {
	session *Session
	opts    AttachOptions
}

var _ remotecommand.Attacher = attacher{}

// AttachContainer implements remotecommand.Attacher. A serial console has
// no size, so resize events are read and dropped.
func (a attacher) AttachContainer(ctx context.Context, _, _, _ string, in io.Reader, out, _ io.WriteCloser, _ bool, resize <-chan remotecommand.TerminalSize) error {
	if resize != nil {
		go func() {
			for range resize {
			}
		}()
	}
	if a.opts.ReadOnly {
		in = nil
	}
	return a.session.Serve(ctx, in, out)
}
