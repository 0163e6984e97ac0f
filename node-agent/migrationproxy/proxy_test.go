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
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"math/big"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newCA(t *testing.T) *testCA {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "agent-ca"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert, key, pool}
}

// leaf issues a certificate like an agent's serving one (or, with
// usage ClientAuth and another name, like something else the CA signs).
func (ca *testCA) leaf(t *testing.T, cn, dns string, usage x509.ExtKeyUsage) Credentials {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn}, DNSNames: []string{dns},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{usage}, KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	c := &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	return Credentials{Certificate: func() (*tls.Certificate, error) { return c, nil }, CAs: ca.pool}
}

// The target admits streams only from the source of a migration it
// authorizes, over mutual TLS with an agent serving certificate of the
// CA, and connects them only to migration ports.
func TestServerAdmitsOnlyTheSourceAgent(t *testing.T) {
	ca := newCA(t)
	other := newCA(t)
	target := ca.leaf(t, agentPrefix+"hv2", "hv2", x509.ExtKeyUsageServerAuth)
	qemu, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer qemu.Close()
	go func() {
		for {
			c, err := qemu.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	s := &Server{
		Creds: target,
		Authorize: func(peer, migration string) error {
			if peer != "hv1" || migration != "ns/m1" {
				return fmt.Errorf("migration %s is not from %s", migration, peer)
			}
			return nil
		},
		Prepare: func(_ context.Context, migration string, req *PrepareRequest) (*PrepareResponse, error) {
			return &PrepareResponse{Paths: map[string]string{req.Disks[0].Path: "/target/disk"}, HypervisorUID: "uid2"}, nil
		},
		LibvirtSocket: filepath.Join(t.TempDir(), "none.sock"),
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Serve(ctx, l)

	peer := func(creds Credentials, migration string) Peer {
		return Peer{Creds: creds, Hypervisor: "hv2", Endpoint: l.Addr().String(), Migration: migration}
	}
	source := ca.leaf(t, agentPrefix+"hv1", "hv1", x509.ExtKeyUsageServerAuth)
	resp, err := peer(source, "ns/m1").Prepare(ctx, &PrepareRequest{VMUID: "u", Disks: []PrepareDisk{{Path: "/src/disk", VirtualSize: 1}}})
	if err != nil || resp.Paths["/src/disk"] != "/target/disk" || resp.HypervisorUID != "uid2" {
		t.Fatalf("prepare from the source: %+v, %v", resp, err)
	}

	refused := []struct {
		name  string
		creds Credentials
		mig   string
		want  string
	}{
		{"another hypervisor", ca.leaf(t, agentPrefix+"hv3", "hv3", x509.ExtKeyUsageServerAuth), "ns/m1", "not from hv3"},
		{"another migration", source, "ns/m2", "not from hv1"},
		{"a client certificate of the CA that is no agent's", ca.leaf(t, "vessel-apiserver", "apiserver", x509.ExtKeyUsageClientAuth), "ns/m1", ""},
		{"another CA", other.leaf(t, agentPrefix+"hv1", "hv1", x509.ExtKeyUsageServerAuth), "ns/m1", ""},
	}
	for _, tt := range refused {
		_, err := peer(tt.creds, tt.mig).Prepare(ctx, &PrepareRequest{Disks: []PrepareDisk{{Path: "/src/disk"}}})
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: prepare = %v, want refused (%q)", tt.name, err, tt.want)
		}
	}

	// A stream reaches a migration port on the target's loopback, and
	// nothing else.
	port := qemu.Addr().(*net.TCPAddr).Port
	if _, _, err := peer(source, "ns/m1").dial(ctx, Header{Migration: "ns/m1", Stream: StreamTCP, Port: port}); port < PortMin || port > PortMax {
		if err == nil || !strings.Contains(err.Error(), "outside the migration ports") {
			t.Errorf("stream to port %d: %v, want refused", port, err)
		}
	}
}

// The source of a migration, admitted, reaches the target's libvirtd with
// the calls a migration makes only: a call to destroy a guest there ends
// its stream, and libvirtd never sees it.
func TestTheSourceMakesOnlyMigrationCallsOnTheTargetLibvirtd(t *testing.T) {
	ca := newCA(t)
	socket := filepath.Join(t.TempDir(), "libvirt.sock")
	libvirtd, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	defer libvirtd.Close()
	received := make(chan []byte, 1)
	go func() {
		c, err := libvirtd.Accept()
		if err != nil {
			return
		}
		b, _ := io.ReadAll(c)
		received <- b
	}()
	s := &Server{
		Creds:         ca.leaf(t, agentPrefix+"hv2", "hv2", x509.ExtKeyUsageServerAuth),
		Authorize:     func(peer, migration string) error { return nil },
		LibvirtSocket: socket,
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Serve(ctx, l)
	source := Peer{Creds: ca.leaf(t, agentPrefix+"hv1", "hv1", x509.ExtKeyUsageServerAuth), Hypervisor: "hv2", Endpoint: l.Addr().String(), Migration: "ns/m1"}
	conn, r, err := source.dial(ctx, Header{Migration: "ns/m1", Stream: StreamLibvirt})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	authList := packet(rpcRemoteProgram, 66, rpcCall, nil)
	destroy := packet(rpcRemoteProgram, 12, rpcCall, []byte("\x00\x00\x00\x01"))
	if _, err := conn.Write(append(append([]byte{}, authList...), destroy...)); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := r.ReadByte(); err == nil {
		t.Error("the stream stayed open after a call to destroy a guest")
	}
	select {
	case got := <-received:
		if string(got) != string(authList) {
			t.Errorf("libvirtd received %d bytes, want only the %d of AUTH_LIST", len(got), len(authList))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the target's libvirtd connection was not closed")
	}
}
