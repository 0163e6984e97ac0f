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

package hypervisor

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"
	"github.com/digitalocean/go-libvirt/socket/dialers"
	"github.com/google/uuid"
	"k8s.io/klog/v2"
)

// DefaultSocket is libvirtd's read-write socket.
const DefaultSocket = "/run/libvirt/libvirt-sock"

// Libvirt is the Hypervisor on libvirtd (qemu:///system) over its UNIX
// socket, with go-libvirt's pure-Go RPC client. It reconnects with backoff
// when libvirtd goes away and re-subscribes to lifecycle events; after every
// (re)connect it sends an Event with an empty UUID so the agent re-checks
// everything it may have missed.
type Libvirt struct {
	socket string
	events chan Event

	mu        sync.Mutex
	conn      *golibvirt.Libvirt // nil while disconnected
	connected chan struct{}      // closed when conn is set; replaced on disconnect
}

var _ Hypervisor = &Libvirt{}

// NewLibvirt returns a hypervisor on the libvirtd socket. Call Run to connect.
func NewLibvirt(socket string) *Libvirt {
	if socket == "" {
		socket = DefaultSocket
	}
	return &Libvirt{
		socket:    socket,
		events:    make(chan Event, 1024),
		connected: make(chan struct{}),
	}
}

// Run keeps a connection to libvirtd until ctx ends.
func (l *Libvirt) Run(ctx context.Context) {
	delay := minReconnectDelay
	for ctx.Err() == nil {
		conn, evs, agentEvs, cancel, err := l.connect(ctx)
		if err != nil {
			klog.FromContext(ctx).V(2).Info("Connecting to libvirtd failed", "socket", l.socket, "err", err, "retryIn", delay)
			select {
			case <-ctx.Done():
			case <-time.After(delay):
			}
			delay = min(delay*2, maxReconnectDelay)
			continue
		}
		delay = minReconnectDelay
		klog.FromContext(ctx).Info("Connected to libvirtd", "socket", l.socket)
		l.setConn(conn)
		l.emit(Event{}) // resync everything
		l.pump(ctx, conn, evs, agentEvs)
		cancel()
		l.setConn(nil)
		if ctx.Err() == nil {
			klog.FromContext(ctx).Info("Lost connection to libvirtd, reconnecting", "socket", l.socket)
		}
		_ = conn.Disconnect()
	}
}

// WaitConnected blocks until a connection exists or ctx ends.
func (l *Libvirt) WaitConnected(ctx context.Context) error {
	l.mu.Lock()
	ch := l.connected
	l.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (l *Libvirt) connect(ctx context.Context) (*golibvirt.Libvirt, <-chan golibvirt.DomainEventLifecycleMsg, <-chan any, context.CancelFunc, error) {
	conn := golibvirt.NewWithDialer(dialers.NewLocal(dialers.WithSocket(l.socket), dialers.WithLocalTimeout(5*time.Second)))
	if err := conn.ConnectToURI(golibvirt.QEMUSystem); err != nil {
		return nil, nil, nil, nil, fmt.Errorf("connect to %s: %w", l.socket, err)
	}
	evCtx, cancel := context.WithCancel(ctx)
	evs, err := conn.LifecycleEvents(evCtx)
	if err != nil {
		cancel()
		_ = conn.Disconnect()
		return nil, nil, nil, nil, fmt.Errorf("subscribe to lifecycle events: %w", err)
	}
	agentEvs, err := conn.SubscribeEvents(evCtx, golibvirt.DomainEventIDAgentLifecycle, golibvirt.OptDomain{})
	if err != nil {
		cancel()
		_ = conn.Disconnect()
		return nil, nil, nil, nil, fmt.Errorf("subscribe to guest agent events: %w", err)
	}
	return conn, evs, agentEvs, cancel, nil
}

// pump forwards lifecycle and guest agent events until the connection or
// ctx ends.
func (l *Libvirt) pump(ctx context.Context, conn *golibvirt.Libvirt, evs <-chan golibvirt.DomainEventLifecycleMsg, agentEvs <-chan any) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-conn.Disconnected():
			return
		case ev, ok := <-evs:
			if !ok {
				return
			}
			l.emit(Event{UUID: uuidString(ev.Dom.UUID)})
		case ev, ok := <-agentEvs:
			if !ok {
				return
			}
			if m, isAgent := ev.(*golibvirt.DomainEventCallbackAgentLifecycleMsg); isAgent {
				l.emit(Event{UUID: uuidString(m.Dom.UUID), Agent: true})
			}
		}
	}
}

func (l *Libvirt) emit(ev Event) {
	select {
	case l.events <- ev:
	default:
		// The agent is behind; a resync event makes it catch up with
		// everything, which loses nothing.
		select {
		case l.events <- Event{}:
		default:
		}
	}
}

func (l *Libvirt) setConn(conn *golibvirt.Libvirt) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.conn = conn
	if conn != nil {
		close(l.connected)
	} else {
		l.connected = make(chan struct{})
	}
}

func (l *Libvirt) client() (*golibvirt.Libvirt, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conn == nil || !l.conn.IsConnected() {
		return nil, ErrDisconnected
	}
	return l.conn, nil
}

// Events implements Hypervisor.
func (l *Libvirt) Events() <-chan Event { return l.events }

func uuidString(u golibvirt.UUID) string {
	return uuid.UUID(u).String()
}

func parseUUID(s string) (golibvirt.UUID, error) {
	u, err := uuid.Parse(s)
	if err != nil {
		return golibvirt.UUID{}, fmt.Errorf("domain uuid %q: %w", s, err)
	}
	return golibvirt.UUID(u), nil
}

// lookup finds the domain and checks Vessel owns it.
func (l *Libvirt) lookup(uid string) (*golibvirt.Libvirt, golibvirt.Domain, stamp, error) {
	c, err := l.client()
	if err != nil {
		return nil, golibvirt.Domain{}, stamp{}, err
	}
	u, err := parseUUID(uid)
	if err != nil {
		return nil, golibvirt.Domain{}, stamp{}, err
	}
	dom, err := c.DomainLookupByUUID(u)
	if err != nil {
		if golibvirt.IsNotFound(err) {
			return nil, golibvirt.Domain{}, stamp{}, ErrNotFound
		}
		return nil, golibvirt.Domain{}, stamp{}, fmt.Errorf("look up domain %s: %w", uid, err)
	}
	st, err := stampOf(c, dom)
	if err != nil {
		return nil, golibvirt.Domain{}, stamp{}, err
	}
	return c, dom, st, nil
}

// stamp is what Vessel wrote into a domain's metadata.
type stamp struct {
	owner    Owner
	specHash string
}

func stampOf(c *golibvirt.Libvirt, dom golibvirt.Domain) (stamp, error) {
	md, err := c.DomainGetMetadata(dom, int32(golibvirt.DomainMetadataElement), golibvirt.OptString{MetadataNamespace}, golibvirt.DomainAffectCurrent)
	if err != nil {
		if isCode(err, golibvirt.ErrNoDomainMetadata) {
			return stamp{}, ErrNotOwned
		}
		if golibvirt.IsNotFound(err) {
			return stamp{}, ErrNotFound
		}
		return stamp{}, fmt.Errorf("read metadata of domain %s: %w", uuidString(dom.UUID), err)
	}
	o, hash, err := parseStamp(md)
	if err != nil {
		return stamp{}, ErrNotOwned
	}
	if o.UID != uuidString(dom.UUID) {
		return stamp{}, ErrNotOwned
	}
	return stamp{owner: o, specHash: hash}, nil
}

func isCode(err error, code golibvirt.ErrorNumber) bool {
	var e golibvirt.Error
	return errors.As(err, &e) && e.Code == uint32(code)
}

// ignore returns nil when err is one of the libvirt error codes.
func ignore(err error, codes ...golibvirt.ErrorNumber) error {
	for _, c := range codes {
		if isCode(err, c) {
			return nil
		}
	}
	return err
}

// Define implements Hypervisor.
func (l *Libvirt) Define(ctx context.Context, cfg *DomainConfig) error {
	c, err := l.client()
	if err != nil {
		return err
	}
	// Never redefine a foreign domain that happens to share the UUID, and
	// keep the name of one already defined: libvirt refuses a define that
	// renames a UUID (domains of older agents have names without the UID).
	name := DomainName(cfg.Owner.Namespace, cfg.Owner.Name, cfg.Owner.UID)
	_, existing, _, err := l.lookup(cfg.Owner.UID)
	switch {
	case err == nil:
		name = existing.Name
	case !errors.Is(err, ErrNotFound):
		return err
	}
	x, err := domainXML(cfg, name)
	if err != nil {
		return err
	}
	if _, err := c.DomainDefineXMLFlags(x, golibvirt.DomainDefineValidate); err != nil {
		return fmt.Errorf("define domain %s: %w", cfg.Owner.UID, err)
	}
	return nil
}

// Start implements Hypervisor.
func (l *Libvirt) Start(ctx context.Context, uid string, paused bool) error {
	c, dom, _, err := l.lookup(uid)
	if err != nil {
		return err
	}
	var flags uint32
	if paused {
		flags = uint32(golibvirt.DomainStartPaused)
	}
	if _, err := c.DomainCreateWithFlags(dom, flags); err != nil {
		if isCode(err, golibvirt.ErrOperationInvalid) && strings.Contains(err.Error(), "already") {
			return nil
		}
		return fmt.Errorf("start domain %s: %w", uid, err)
	}
	return nil
}

// Shutdown implements Hypervisor.
func (l *Libvirt) Shutdown(ctx context.Context, uid string) error {
	c, dom, _, err := l.lookup(uid)
	if err != nil {
		return err
	}
	if err := c.DomainShutdownFlags(dom, golibvirt.DomainShutdownAcpiPowerBtn); err != nil {
		if ignore(err, golibvirt.ErrOperationInvalid) == nil {
			return nil // not running
		}
		return fmt.Errorf("shut down domain %s: %w", uid, err)
	}
	return nil
}

// Destroy implements Hypervisor.
func (l *Libvirt) Destroy(ctx context.Context, uid string) error {
	c, dom, _, err := l.lookup(uid)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := c.DomainDestroyFlags(dom, golibvirt.DomainDestroyDefault); err != nil {
		if ignore(err, golibvirt.ErrOperationInvalid, golibvirt.ErrNoDomain) == nil {
			return nil
		}
		return fmt.Errorf("destroy domain %s: %w", uid, err)
	}
	return nil
}

// Suspend implements Hypervisor.
func (l *Libvirt) Suspend(ctx context.Context, uid string) error {
	c, dom, _, err := l.lookup(uid)
	if err != nil {
		return err
	}
	if err := c.DomainSuspend(dom); err != nil {
		return fmt.Errorf("suspend domain %s: %w", uid, err)
	}
	return nil
}

// Resume implements Hypervisor.
func (l *Libvirt) Resume(ctx context.Context, uid string) error {
	c, dom, _, err := l.lookup(uid)
	if err != nil {
		return err
	}
	if err := c.DomainResume(dom); err != nil {
		return fmt.Errorf("resume domain %s: %w", uid, err)
	}
	return nil
}

// Undefine implements Hypervisor.
func (l *Libvirt) Undefine(ctx context.Context, uid string) error {
	c, dom, _, err := l.lookup(uid)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	flags := golibvirt.DomainUndefineManagedSave | golibvirt.DomainUndefineSnapshotsMetadata |
		golibvirt.DomainUndefineCheckpointsMetadata | golibvirt.DomainUndefineNvram
	if err := c.DomainUndefineFlags(dom, flags); err != nil {
		if golibvirt.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("undefine domain %s: %w", uid, err)
	}
	return nil
}

// Lookup implements Hypervisor.
func (l *Libvirt) Lookup(ctx context.Context, uid string) (*Domain, error) {
	c, dom, st, err := l.lookup(uid)
	if err != nil {
		return nil, err
	}
	return describe(c, dom, st)
}

func describe(c *golibvirt.Libvirt, dom golibvirt.Domain, st stamp) (*Domain, error) {
	state, reason, err := c.DomainGetState(dom, 0)
	if err != nil {
		if golibvirt.IsNotFound(err) {
			return nil, ErrNotFound
		}
		return nil, fmt.Errorf("get state of domain %s: %w", st.owner.UID, err)
	}
	s, r := mapState(golibvirt.DomainState(state), reason)
	return &Domain{UUID: uuidString(dom.UUID), Name: dom.Name, State: s, Reason: r, Owner: st.owner, SpecHash: st.specHash}, nil
}

// mapState reduces libvirt's state and reason codes to what the agent acts on.
func mapState(state golibvirt.DomainState, reason int32) (State, Reason) {
	switch state {
	case golibvirt.DomainRunning:
		return StateRunning, ReasonUnknown
	case golibvirt.DomainPaused:
		switch golibvirt.DomainPausedReason(reason) {
		case golibvirt.DomainPausedUser:
			return StatePaused, ReasonUser
		case golibvirt.DomainPausedStartingUp:
			return StatePaused, ReasonStartingUp
		case golibvirt.DomainPausedCrashed:
			return StatePaused, ReasonCrashed
		}
		return StatePaused, ReasonUnknown
	case golibvirt.DomainShutdown:
		return StateShutdown, ReasonUnknown
	case golibvirt.DomainShutoff:
		switch golibvirt.DomainShutoffReason(reason) {
		case golibvirt.DomainShutoffShutdown:
			return StateShutoff, ReasonShutdown
		case golibvirt.DomainShutoffDestroyed:
			return StateShutoff, ReasonDestroyed
		case golibvirt.DomainShutoffCrashed, golibvirt.DomainShutoffFailed:
			return StateShutoff, ReasonCrashed
		}
		return StateShutoff, ReasonUnknown
	case golibvirt.DomainCrashed:
		return StateCrashed, ReasonCrashed
	}
	return StateOther, ReasonUnknown
}

// List implements Hypervisor.
func (l *Libvirt) List(ctx context.Context) ([]Domain, error) {
	c, err := l.client()
	if err != nil {
		return nil, err
	}
	doms, _, err := c.ConnectListAllDomains(1, golibvirt.ConnectListDomainsActive|golibvirt.ConnectListDomainsInactive)
	if err != nil {
		return nil, fmt.Errorf("list domains: %w", err)
	}
	var out []Domain
	for _, dom := range doms {
		st, err := stampOf(c, dom)
		if errors.Is(err, ErrNotOwned) || errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		d, err := describe(c, dom, st)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, *d)
	}
	return out, nil
}

// Versions implements Hypervisor.
func (l *Libvirt) Versions(ctx context.Context) (Versions, error) {
	c, err := l.client()
	if err != nil {
		return Versions{}, err
	}
	lib, err := c.ConnectGetLibVersion()
	if err != nil {
		return Versions{}, fmt.Errorf("get libvirt version: %w", err)
	}
	hv, err := c.ConnectGetVersion()
	if err != nil {
		return Versions{}, fmt.Errorf("get QEMU version: %w", err)
	}
	return Versions{Libvirt: versionString(lib), QEMU: versionString(hv)}, nil
}

// versionString turns libvirt's major*1e6+minor*1e3+micro into "major.minor.micro".
func versionString(v uint64) string {
	return fmt.Sprintf("%d.%d.%d", v/1000000, v/1000%1000, v%1000)
}
