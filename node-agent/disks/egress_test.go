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

package disks

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
)

func TestAddressClass(t *testing.T) {
	for addr, want := range map[string]string{
		"127.0.0.1":                "loopback",
		"127.0.0.2":                "loopback",
		"::1":                      "loopback",
		"::ffff:127.0.0.1":         "loopback",
		"169.254.169.254":          "link-local",
		"::ffff:169.254.169.254":   "link-local",
		"fe80::1":                  "link-local",
		"10.1.2.3":                 "private",
		"172.16.0.1":               "private",
		"172.31.255.255":           "private",
		"192.168.1.1":              "private",
		"fc00::1":                  "private",
		"fd12:3456::1":             "private",
		"100.64.0.1":               "reserved",
		"100.127.255.254":          "reserved",
		"0.0.0.0":                  "unspecified",
		"0.1.2.3":                  "reserved",
		"::":                       "unspecified",
		"224.0.0.1":                "multicast",
		"239.255.255.250":          "multicast",
		"ff02::1":                  "multicast",
		"ff05::2":                  "multicast",
		"255.255.255.255":          "not unicast",
		"240.0.0.1":                "reserved",
		"192.0.2.1":                "reserved",
		"198.18.0.1":               "reserved",
		"64:ff9b::a9fe:a9fe":       "not global unicast", // NAT64 of 169.254.169.254
		"2002:a9fe:a9fe::1":        "reserved",           // 6to4 of 169.254.169.254
		"2001:db8::1":              "reserved",
		"2001::1":                  "reserved", // Teredo
		"::a9fe:a9fe":              "not global unicast",
		"fec0::1":                  "not global unicast",
		"8.8.8.8":                  "",
		"1.1.1.1":                  "",
		"172.32.0.1":               "",
		"100.128.0.1":              "",
		"2606:4700:4700::1111":     "",
		"::ffff:8.8.8.8":           "",
		"2a00:1450:4001:80b::200e": "",
	} {
		if got := addressClass(netip.MustParseAddr(addr)); got != want {
			t.Errorf("addressClass(%s) = %q, want %q", addr, got, want)
		}
	}
}

// server listens on addr (any loopback address: 127.0.0.0/8 all reaches
// this host) and counts requests.
type server struct {
	*httptest.Server
	hits atomic.Int32
}

func newServer(t *testing.T, addr string, h http.HandlerFunc) *server {
	t.Helper()
	ln, err := net.Listen("tcp", addr+":0")
	if err != nil {
		t.Skipf("cannot listen on %s: %v", addr, err)
	}
	s := &server{}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		h(w, r)
	}))
	s.Listener.Close()
	s.Listener = ln
	s.Start()
	t.Cleanup(s.Close)
	return s
}

func ok(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "image") }

func redirectTo(target string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, target, http.StatusFound) }
}

// get fetches url with client and returns the body or the error.
func get(client *http.Client, url string) (string, error) {
	resp, err := client.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func TestEgress(t *testing.T) {
	allowed := netip.MustParsePrefix("127.0.0.2/32")
	images := newServer(t, "127.0.0.2", ok)   // the operator's allow-listed image server
	internal := newServer(t, "127.0.0.1", ok) // a loopback service tenants must not reach
	imagesPort := images.Listener.Addr().(*net.TCPAddr).Port
	internalPort := internal.Listener.Addr().(*net.TCPAddr).Port
	hosts := map[string][]netip.Addr{
		"images.example.com":   {netip.MustParseAddr("127.0.0.2")},
		"internal.example.com": {netip.MustParseAddr("127.0.0.1")},
		"metadata.example.com": {netip.MustParseAddr("169.254.169.254")},
		"private.example.com":  {netip.MustParseAddr("10.1.2.3"), netip.MustParseAddr("fd00::1")},
		// Both a refused and an allowed address: only the allowed one is dialled.
		"mixed.example.com": {netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2")},
	}
	lookup := func(_ context.Context, _, host string) ([]netip.Addr, error) {
		if a, ok := hosts[host]; ok {
			return a, nil
		}
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	e := Egress{AllowedCIDRs: []netip.Prefix{allowed}, lookup: lookup}

	redirector := func(target string) string {
		return newServer(t, "127.0.0.2", redirectTo(target)).URL + "/evil.qcow2"
	}
	loop := newServer(t, "127.0.0.2", nil)
	loop.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		loop.hits.Add(1)
		http.Redirect(w, r, loop.URL+fmt.Sprintf("/%d", loop.hits.Load()), http.StatusFound)
	})

	tests := []struct {
		name    string
		url     string
		wantErr string // "" when the download must work
	}{
		{"allow-listed address", images.URL + "/disk.img", ""},
		{"allow-listed name", fmt.Sprintf("http://images.example.com:%d/disk.img", imagesPort), ""},
		{"name with a refused and an allowed address", fmt.Sprintf("http://mixed.example.com:%d/disk.img", imagesPort), ""},
		{"redirect to an allowed address", redirector(images.URL + "/disk.img"), ""},
		{"loopback", internal.URL + "/", "127.0.0.1 is a loopback address"},
		{"IPv6 loopback", fmt.Sprintf("http://[::1]:%d/", internalPort), "loopback"},
		{"IPv4-mapped loopback", fmt.Sprintf("http://[::ffff:127.0.0.1]:%d/", internalPort), "loopback"},
		{"unspecified", fmt.Sprintf("http://0.0.0.0:%d/", internalPort), "unspecified"},
		{"metadata service", "http://169.254.169.254/latest/meta-data/", "link-local"},
		{"name resolving to loopback", fmt.Sprintf("http://internal.example.com:%d/", internalPort), "internal.example.com resolves only to addresses downloads may not reach (loopback"},
		{"name resolving to the metadata service", "http://metadata.example.com/latest/meta-data/", "(link-local"},
		{"name resolving to private addresses", "http://private.example.com/x", "(private"},
		{"redirect to loopback", redirector(internal.URL + "/secret"), "loopback"},
		{"redirect to the metadata service", redirector("http://169.254.169.254/latest/meta-data/"), "link-local"},
		{"redirect to a name resolving to loopback", redirector(fmt.Sprintf("http://internal.example.com:%d/", internalPort)), "loopback"},
		{"redirect to a file URL", redirector("file:///etc/shadow"), "redirect to a \"file\" URL"},
		{"redirect loop", loop.URL + "/0", "more than 5 redirects"},
	}
	client := e.NewClient()
	// The system's resolver, as the agent uses it.
	if _, err := get(Egress{}.NewClient(), fmt.Sprintf("http://localhost:%d/", internalPort)); !errors.Is(err, ErrURLNotAllowed) || internal.hits.Load() != 0 {
		t.Errorf("localhost through the system resolver: %v", err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := internal.hits.Load()
			body, err := get(client, tt.url)
			if tt.wantErr == "" {
				if err != nil || body != "image" {
					t.Fatalf("GET %s = %q, %v; want the image", tt.url, body, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("GET %s worked; want it refused", tt.url)
			}
			if !errors.Is(err, ErrURLNotAllowed) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("GET %s: %v; want ErrURLNotAllowed with %q", tt.url, err, tt.wantErr)
			}
			if internal.hits.Load() != before {
				t.Errorf("the internal service was reached")
			}
			// A name's internal addresses are not told to the tenant.
			for _, secret := range []string{"10.1.2.3", "fd00::1"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error reveals what a name resolves to: %v", err)
				}
			}
		})
	}
}

// TestEgressProxy: proxies from the environment are ignored; a configured
// proxy carries the downloads, but IP-literal URLs are still checked.
func TestEgressProxy(t *testing.T) {
	images := newServer(t, "127.0.0.2", ok)
	proxied := atomic.Int32{}
	proxy := newServer(t, "127.0.0.3", func(w http.ResponseWriter, r *http.Request) {
		proxied.Add(1)
		_, _ = io.WriteString(w, "image")
	})
	t.Setenv("HTTP_PROXY", proxy.URL)
	t.Setenv("http_proxy", proxy.URL)
	t.Setenv("NO_PROXY", "")
	port := images.Listener.Addr().(*net.TCPAddr).Port
	lookup := func(context.Context, string, string) ([]netip.Addr, error) {
		return []netip.Addr{netip.MustParseAddr("127.0.0.2")}, nil
	}
	url := fmt.Sprintf("http://images.example.com:%d/disk.img", port)

	direct := Egress{AllowedCIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}, lookup: lookup}.NewClient()
	if body, err := get(direct, url); err != nil || body != "image" || proxied.Load() != 0 || images.hits.Load() != 1 {
		t.Fatalf("without a configured proxy: %q, %v; %d requests went to the environment's proxy", body, err, proxied.Load())
	}

	proxyURL := mustParseURL(t, proxy.URL)
	viaProxy := Egress{Proxy: proxyURL, lookup: lookup}.NewClient()
	if body, err := get(viaProxy, url); err != nil || body != "image" || proxied.Load() != 1 {
		t.Fatalf("with a configured proxy: %q, %v; proxied %d", body, err, proxied.Load())
	}
	if _, err := get(viaProxy, "http://169.254.169.254/latest/meta-data/"); !errors.Is(err, ErrURLNotAllowed) || proxied.Load() != 1 {
		t.Errorf("IP literal through the proxy: %v (proxied %d)", err, proxied.Load())
	}
}

func mustParseURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func TestParseCIDRs(t *testing.T) {
	got, err := ParseCIDRs([]string{"127.0.0.2/32", "10.0.0.1", "fd00::/8", " 192.168.1.7/24 ", ""})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"127.0.0.2/32", "10.0.0.1/32", "fd00::/8", "192.168.1.0/24"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("ParseCIDRs = %v, want %v", got, want)
	}
	if _, err := ParseCIDRs([]string{"example.com"}); err == nil {
		t.Errorf("a name was accepted as a CIDR")
	}
}
