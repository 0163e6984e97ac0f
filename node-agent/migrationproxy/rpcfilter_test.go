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
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
)

func packet(prog, proc, typ uint32, body []byte) []byte {
	b := make([]byte, rpcHeaderSize, rpcHeaderSize+len(body))
	binary.BigEndian.PutUint32(b[0:], uint32(rpcHeaderSize+len(body)))
	binary.BigEndian.PutUint32(b[4:], prog)
	binary.BigEndian.PutUint32(b[8:], 1)
	binary.BigEndian.PutUint32(b[12:], proc)
	binary.BigEndian.PutUint32(b[16:], typ)
	binary.BigEndian.PutUint32(b[20:], 7)
	return append(b, body...)
}

// The source gets its migration calls through, byte for byte, and is cut
// off at the first other call, none of which reaches the target libvirtd.
func TestOnlyMigrationCallsReachLibvirtd(t *testing.T) {
	allowed := bytes.Join([][]byte{
		packet(rpcRemoteProgram, 66, rpcCall, nil),                                 // AUTH_LIST
		packet(rpcRemoteProgram, 1, rpcCall, []byte("\x00\x00\x00\x00")),           // CONNECT_OPEN
		packet(rpcKeepaliveProgram, 2, 2, nil),                                     // PONG
		packet(rpcRemoteProgram, 303, rpcCall, bytes.Repeat([]byte{'x'}, 100<<10)), // PREPARE3_PARAMS, larger than a buffer
		packet(rpcRemoteProgram, 306, rpcCall, []byte("cookie..")),                 // FINISH3_PARAMS
	}, nil)
	for _, tc := range []struct {
		name string
		bad  []byte
	}{
		{"destroy a guest", packet(rpcRemoteProgram, 12, rpcCall, []byte("\x00\x00\x00\x01"))}, // DOMAIN_DESTROY
		{"define a guest", packet(rpcRemoteProgram, 11, rpcCall, []byte("<domain/>"))},         // DOMAIN_DEFINE_XML
		{"a tunnelled migration", packet(rpcRemoteProgram, 304, rpcCall, nil)},
		{"another program", packet(0x20008087, 1, rpcCall, nil)},
		{"a stream packet", packet(rpcRemoteProgram, 306, 3, nil)},
		{"a packet too large", func() []byte {
			p := packet(rpcRemoteProgram, 1, rpcCall, nil)
			binary.BigEndian.PutUint32(p, rpcMaxPacket+1)
			return p
		}()},
		{"a packet shorter than its header", func() []byte {
			p := packet(rpcRemoteProgram, 1, rpcCall, nil)
			binary.BigEndian.PutUint32(p, 8)
			return p
		}()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got bytes.Buffer
			in := append(append(append([]byte{}, allowed...), tc.bad...), packet(rpcRemoteProgram, 2, rpcCall, nil)...)
			err := copyMigrationCalls(&got, bytes.NewReader(in))
			if !errors.Is(err, errCallRefused) {
				t.Fatalf("err %v, want the call refused", err)
			}
			if !bytes.Equal(got.Bytes(), allowed) {
				t.Fatalf("passed %d bytes, want exactly the %d of the allowed calls", got.Len(), len(allowed))
			}
		})
	}
}
