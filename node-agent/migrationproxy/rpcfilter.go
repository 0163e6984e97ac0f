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

package migrationproxy

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// A peer-to-peer migration has the source libvirtd open a connection to the
// target's libvirtd and call a handful of its procedures. That connection
// is root on the target's libvirtd: left raw, a source hypervisor would get
// every guest of the target for the time of a migration. The target agent
// lets the source's calls through only when they are the migration's own:
// libvirt's RPC packets (RFC 4506 XDR) start with a length and a header
// (program, version, procedure, type, serial, status), read here before a
// packet is passed on. Anything else ends the stream (and so fails the
// migration, with the refusal in the target agent's log).
const (
	// rpcRemoteProgram is libvirt's REMOTE_PROGRAM, its main API.
	rpcRemoteProgram = 0x20008086
	// rpcKeepaliveProgram is libvirt's KEEPALIVE_PROGRAM (PING, PONG).
	rpcKeepaliveProgram = 0x6b656570
	// rpcCall is VIR_NET_CALL, a request; replies and streams go the
	// other way only.
	rpcCall = 0
	// rpcHeaderSize is the length word and the six header words.
	rpcHeaderSize = 28
	// rpcMaxPacket is libvirt's VIR_NET_MESSAGE_MAX plus the length word.
	rpcMaxPacket = 32<<20 + 4
)

// migrationCalls are the REMOTE_PROGRAM procedures a source libvirtd
// calls on its destination for VIR_MIGRATE_PEER2PEER without
// VIR_MIGRATE_TUNNELLED, by number (remote_protocol.x): all that Debian's
// libvirt 9 called in e2e/migration's migrations, completed and aborted.
var migrationCalls = map[uint32]string{
	1:   "CONNECT_OPEN",
	2:   "CONNECT_CLOSE",
	60:  "CONNECT_SUPPORTS_FEATURE",
	66:  "AUTH_LIST",
	303: "DOMAIN_MIGRATE_PREPARE3_PARAMS",
	306: "DOMAIN_MIGRATE_FINISH3_PARAMS",
	360: "CONNECT_REGISTER_CLOSE_CALLBACK",
	361: "CONNECT_UNREGISTER_CLOSE_CALLBACK",
}

// keepaliveCalls are KEEPALIVE_PROGRAM's procedures.
var keepaliveCalls = map[uint32]string{1: "PING", 2: "PONG"}

// errCallRefused says the source made a call a migration does not need.
var errCallRefused = errors.New("libvirt call refused on a migration stream")

// copyMigrationCalls copies libvirt RPC packets from src to dst while they
// are calls a migration makes, and stops with errCallRefused at the first
// that is not (before any of it reaches dst).
func copyMigrationCalls(dst io.Writer, src io.Reader) error {
	buf := make([]byte, 64<<10)
	for {
		if _, err := io.ReadFull(src, buf[:rpcHeaderSize]); err != nil {
			return err
		}
		size := binary.BigEndian.Uint32(buf[0:4])
		prog := binary.BigEndian.Uint32(buf[4:8])
		proc := binary.BigEndian.Uint32(buf[12:16])
		typ := binary.BigEndian.Uint32(buf[16:20])
		if size < rpcHeaderSize || size > rpcMaxPacket {
			return fmt.Errorf("%w: a packet of %d bytes", errCallRefused, size)
		}
		if err := allowedCall(prog, proc, typ); err != nil {
			return err
		}
		if _, err := dst.Write(buf[:rpcHeaderSize]); err != nil {
			return err
		}
		if _, err := io.CopyBuffer(dst, io.LimitReader(src, int64(size-rpcHeaderSize)), buf); err != nil {
			return err
		}
	}
}

func allowedCall(prog, proc, typ uint32) error {
	var known map[uint32]string
	switch prog {
	case rpcRemoteProgram:
		known = migrationCalls
	case rpcKeepaliveProgram:
		known = keepaliveCalls
	default:
		return fmt.Errorf("%w: program %#x", errCallRefused, prog)
	}
	if typ != rpcCall && prog != rpcKeepaliveProgram {
		return fmt.Errorf("%w: packet type %d of procedure %d", errCallRefused, typ, proc)
	}
	if _, ok := known[proc]; !ok {
		return fmt.Errorf("%w: procedure %d of program %#x", errCallRefused, proc, prog)
	}
	return nil
}
