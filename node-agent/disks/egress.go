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
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"time"
)

// DefaultMaxRedirects is how many redirects an image download follows.
const DefaultMaxRedirects = 5

// Egress says where image downloads may connect. A tenant names the URL and
// the agent fetches it from inside the host's network: without these checks
// a VM spec could probe loopback services, the cloud metadata service at
// 169.254.169.254 or the private network, and read answers back through
// status messages.
type Egress struct {
	// AllowedCIDRs are reachable even though they are loopback, link-local,
	// private or otherwise not public (an operator's own image server).
	AllowedCIDRs []netip.Prefix
	// Proxy, when set, carries every download; the proxy then decides which
	// hosts are reachable by name, and only IP-literal URLs are checked
	// here. Proxies named in the environment (HTTP_PROXY, ...) are never
	// used.
	Proxy *url.URL
	// MaxRedirects bounds the redirects followed; 0 means
	// DefaultMaxRedirects.
	MaxRedirects int

	// lookup resolves host names (tests replace it).
	lookup func(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// notPublic are the IANA special-purpose ranges that are not the public
// internet, beyond what netip's predicates cover. IPv6 outside 2000::/3
// (NAT64, discard, site-local, ...) is refused as a whole.
var notPublic = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),       // "this network"
	netip.MustParsePrefix("100.64.0.0/10"),   // carrier-grade NAT
	netip.MustParsePrefix("192.0.0.0/24"),    // IETF protocol assignments
	netip.MustParsePrefix("192.0.2.0/24"),    // documentation
	netip.MustParsePrefix("192.88.99.0/24"),  // 6to4 relay anycast
	netip.MustParsePrefix("198.18.0.0/15"),   // benchmarking
	netip.MustParsePrefix("198.51.100.0/24"), // documentation
	netip.MustParsePrefix("203.0.113.0/24"),  // documentation
	netip.MustParsePrefix("240.0.0.0/4"),     // reserved, and broadcast
	netip.MustParsePrefix("2001::/23"),       // IETF protocol assignments (Teredo, ...)
	netip.MustParsePrefix("2001:db8::/32"),   // documentation
	netip.MustParsePrefix("2002::/16"),       // 6to4: embeds any IPv4 address
	netip.MustParsePrefix("3fff::/20"),       // documentation
}

var globalUnicast6 = netip.MustParsePrefix("2000::/3")

// addressClass says why addr is not public, or "" when it is.
func addressClass(addr netip.Addr) string {
	addr = addr.Unmap()
	switch {
	case !addr.IsValid():
		return "invalid"
	case addr.IsUnspecified():
		return "unspecified"
	case addr.IsLoopback():
		return "loopback"
	case addr.IsLinkLocalUnicast():
		return "link-local"
	case addr.IsMulticast(), addr.IsLinkLocalMulticast(), addr.IsInterfaceLocalMulticast():
		return "multicast"
	case addr.IsPrivate():
		return "private"
	case !addr.IsGlobalUnicast():
		return "not unicast"
	}
	if addr.Is6() && !globalUnicast6.Contains(addr) {
		return "not global unicast"
	}
	for _, p := range notPublic {
		if p.Contains(addr) {
			return "reserved"
		}
	}
	return ""
}

// check says why a connection to addr is refused, or nil.
func (e *Egress) check(addr netip.Addr) error {
	addr = addr.Unmap()
	for _, p := range e.AllowedCIDRs {
		if p.Contains(addr) {
			return nil
		}
	}
	if class := addressClass(addr); class != "" {
		return fmt.Errorf("%w: %s is a %s address (an operator may allow it with --image-allowed-cidrs)", ErrURLNotAllowed, addr, class)
	}
	return nil
}

// NewClient returns the HTTP client image downloads use: every connection's
// address is checked when it is made (after name resolution, for every
// redirect), at most MaxRedirects redirects to http(s) URLs are followed,
// and only the configured proxy is used.
func (e Egress) NewClient() *http.Client {
	if e.MaxRedirects <= 0 {
		e.MaxRedirects = DefaultMaxRedirects
	}
	if e.lookup == nil {
		e.lookup = net.DefaultResolver.LookupNetIP
	}
	dialer := &net.Dialer{
		Timeout:   30 * time.Second,
		KeepAlive: 30 * time.Second,
		// The last word: whatever address a connection ends up using (a
		// name's, a redirect's), it is checked right before connect(2).
		Control: func(network, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return fmt.Errorf("%w: cannot parse %q", ErrURLNotAllowed, address)
			}
			return e.check(ap.Addr())
		},
	}
	transport := &http.Transport{
		DialContext:           e.dialContext(dialer),
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          16,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   30 * time.Second,
		ResponseHeaderTimeout: 60 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	var rt http.RoundTripper = transport
	if e.Proxy != nil {
		transport.Proxy = http.ProxyURL(e.Proxy)
		rt = literalGuard{e: &e, next: transport}
	}
	return &http.Client{
		Transport: rt,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) > e.MaxRedirects {
				return fmt.Errorf("%w: more than %d redirects", ErrURLNotAllowed, e.MaxRedirects)
			}
			if req.URL.Scheme != "http" && req.URL.Scheme != "https" {
				return fmt.Errorf("%w: redirect to a %q URL", ErrURLNotAllowed, req.URL.Scheme)
			}
			return nil
		},
	}
}

// dialContext resolves the host itself and dials only checked addresses, so
// a name that resolves to both a public and a private address cannot be
// steered to the private one, and the error says why when all are refused.
// The proxy, when configured, is dialled as the operator configured it.
func (e *Egress) dialContext(d *net.Dialer) func(ctx context.Context, network, addr string) (net.Conn, error) {
	var proxyAddr string
	if e.Proxy != nil {
		proxyAddr = canonicalAddr(e.Proxy)
	}
	plain := *d
	plain.Control = nil
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		if proxyAddr != "" && addr == proxyAddr {
			return plain.DialContext(ctx, network, addr)
		}
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		var addrs []netip.Addr
		if ip, err := netip.ParseAddr(host); err == nil {
			addrs = []netip.Addr{ip}
		} else if addrs, err = e.lookup(ctx, "ip", host); err != nil {
			return nil, err
		}
		var refused []string
		var lastErr error
		for _, ip := range addrs {
			if err := e.check(ip); err != nil {
				refused = append(refused, addressClass(ip))
				lastErr = err
				continue
			}
			conn, err := d.DialContext(ctx, network, net.JoinHostPort(ip.Unmap().String(), port))
			if err == nil {
				return conn, nil
			}
			lastErr = err
		}
		if len(refused) == len(addrs) && len(addrs) > 0 {
			if len(addrs) == 1 && host == addrs[0].String() {
				return nil, lastErr
			}
			// Which internal address a name has is the operator's business:
			// say only what kind of address it is.
			return nil, fmt.Errorf("%w: %s resolves only to addresses downloads may not reach (%s; an operator may allow them with --image-allowed-cidrs)", ErrURLNotAllowed, host, strings.Join(dedupe(refused), ", "))
		}
		if lastErr == nil {
			lastErr = fmt.Errorf("%s has no addresses", host)
		}
		return nil, lastErr
	}
}

// literalGuard checks IP-literal URLs before they go to the proxy, which
// would otherwise connect to them on the tenant's behalf.
type literalGuard struct {
	e    *Egress
	next http.RoundTripper
}

func (g literalGuard) RoundTrip(req *http.Request) (*http.Response, error) {
	if ip, err := netip.ParseAddr(strings.Trim(req.URL.Hostname(), "[]")); err == nil {
		if err := g.e.check(ip); err != nil {
			return nil, err
		}
	}
	return g.next.RoundTrip(req)
}

// canonicalAddr is u's host:port with the scheme's default port, as
// http.Transport dials a proxy.
func canonicalAddr(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443", "socks5": "1080"}[u.Scheme]
	}
	return net.JoinHostPort(u.Hostname(), port)
}

func dedupe(s []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, v := range s {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}

// ParseCIDRs parses --image-allowed-cidrs values; a bare address is a /32
// or /128.
func ParseCIDRs(values []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	var errs []error
	for _, v := range values {
		v = strings.TrimSpace(v)
		if v == "" {
			continue
		}
		if p, err := netip.ParsePrefix(v); err == nil {
			out = append(out, p.Masked())
			continue
		}
		if a, err := netip.ParseAddr(v); err == nil {
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		errs = append(errs, fmt.Errorf("%q is not a CIDR or an IP address", v))
	}
	return out, errors.Join(errs...)
}
