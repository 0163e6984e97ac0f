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

package vm

import (
	"context"
	"errors"
	"net"
	"reflect"
	"strings"
	"sync"
	"time"

	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/node-agent/hypervisor"
)

// How the guest agent of a running guest is asked about (agentProbeDue).
// libvirt tells when the agent connects or goes away (agent lifecycle
// events): those make a probe due at once. Between them, a connected
// agent is asked again every agentRefresh (the host name may change), and
// a guest whose agent has not connected yet every agentRetry for the first
// agentBootWindow after it started, in case an event was missed.
const (
	agentProbeTimeout = 15 * time.Second
	agentRefresh      = 60 * time.Second
	agentRetry        = 5 * time.Second
	agentBootWindow   = 2 * time.Minute
)

// agentObservation is what the last probe of a guest's agent found.
type agentObservation struct {
	// Connected says the agent answered.
	Connected bool
	// Info is the agent's answer (nil when it did not answer).
	Info *hypervisor.GuestInfo
	// Err says why it did not answer.
	Err string
	// At is when the probe finished.
	At time.Time
}

// agentEntry is the watcher's memory of one domain's agent.
type agentEntry struct {
	obs      *agentObservation // nil until a probe finished
	stale    bool              // an agent event came after obs
	inFlight bool
}

// agentWatcher asks the guest agents of running guests about their guests
// in the background, so a sync never waits for a guest: a pass reads the
// last observation and, when one is due, starts a probe whose end
// enqueues the VM again.
type agentWatcher struct {
	agent   hypervisor.GuestAgent
	clock   clock.PassiveClock
	enqueue func(key string)

	mu    sync.Mutex
	byUID map[string]*agentEntry
}

func newAgentWatcher(agent hypervisor.GuestAgent, clk clock.PassiveClock, enqueue func(string)) *agentWatcher {
	return &agentWatcher{agent: agent, clock: clk, enqueue: enqueue, byUID: map[string]*agentEntry{}}
}

// changed records an agent lifecycle event for the domain uid.
func (w *agentWatcher) changed(uid string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if e := w.byUID[uid]; e != nil {
		e.stale = true
	}
}

// observe returns the last observation of the agent of the VM key's
// domain uid (nil when none yet), starting a probe in the background when
// one is due. A guest that is off forgets its agent.
func (w *agentWatcher) observe(ctx context.Context, key, uid string, state hypervisor.State, startedAt time.Time) *agentObservation {
	if w == nil || w.agent == nil {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if !state.Active() {
		delete(w.byUID, uid)
		return nil
	}
	e := w.byUID[uid]
	if e == nil {
		e = &agentEntry{}
		w.byUID[uid] = e
	}
	now := w.clock.Now()
	// A paused guest's agent cannot answer: keep what it said last.
	if state == hypervisor.StateRunning && !e.inFlight && agentProbeDue(e.obs, e.stale, now, startedAt) {
		e.inFlight, e.stale = true, false
		go w.probe(klog.NewContext(context.WithoutCancel(ctx), klog.FromContext(ctx)), key, uid)
	}
	if e.obs == nil {
		return nil
	}
	o := *e.obs
	return &o
}

// forget drops what is known of uid's agent (the VM is gone).
func (w *agentWatcher) forget(uid string) {
	if w == nil {
		return
	}
	w.mu.Lock()
	delete(w.byUID, uid)
	w.mu.Unlock()
}

// agentProbeDue says whether to ask a running guest's agent again.
func agentProbeDue(last *agentObservation, stale bool, now, startedAt time.Time) bool {
	switch {
	case last == nil || stale:
		return true
	case last.Connected:
		return now.Sub(last.At) >= agentRefresh
	default:
		return now.Sub(last.At) >= agentRetry && now.Sub(startedAt) < agentBootWindow
	}
}

// agentRequeue is how soon a pass over a running guest looks again for
// its agent's sake, 0 for no particular time (events and the resync do).
func agentRequeue(last *agentObservation, now, startedAt time.Time) time.Duration {
	if last != nil && last.Connected {
		return 0
	}
	if now.Sub(startedAt) < agentBootWindow {
		return agentRetry
	}
	return 0
}

// probe asks the agent once and enqueues the VM when the answer differs
// from the last one.
func (w *agentWatcher) probe(ctx context.Context, key, uid string) {
	ctx, cancel := context.WithTimeout(ctx, agentProbeTimeout)
	defer cancel()
	info, err := w.agent.GuestInfo(ctx, uid)
	obs := &agentObservation{At: w.clock.Now()}
	switch {
	case err == nil:
		obs.Connected, obs.Info = true, info
	case errors.Is(err, hypervisor.ErrAgentNotConnected):
		obs.Err = err.Error()
	default:
		obs.Err = err.Error()
		klog.FromContext(ctx).V(2).Info("Asking the guest agent failed", "err", err)
	}
	w.mu.Lock()
	e := w.byUID[uid]
	if e == nil {
		w.mu.Unlock()
		return // the guest stopped meanwhile
	}
	changed := e.obs == nil || e.obs.Connected != obs.Connected || e.obs.Err != obs.Err || !sameGuestInfo(e.obs.Info, obs.Info)
	e.obs, e.inFlight = obs, false
	stale := e.stale
	w.mu.Unlock()
	if changed || stale {
		w.enqueue(key)
	}
}

func sameGuestInfo(a, b *hypervisor.GuestInfo) bool {
	if a == nil || b == nil {
		return a == b
	}
	return reflect.DeepEqual(a, b)
}

// guestOSInfo is status.guestOSInfo from the agent's answer.
func guestOSInfo(info *hypervisor.GuestInfo) *v1alpha1.GuestOSInfo {
	if info == nil {
		return nil
	}
	os := info.OS
	return &v1alpha1.GuestOSInfo{
		Name: os.Name, PrettyName: os.PrettyName, ID: os.ID, Version: os.Version, VersionID: os.VersionID,
		KernelRelease: os.KernelRelease, KernelVersion: os.KernelVersion, Machine: os.Machine,
		Hostname: info.Hostname,
	}
}

// guestAgentAddresses are the addresses the guest agent reports on the
// guest interface with MAC address mac (IPv4 first, link-local IPv6 left
// out), for status.interfaces once it carries addresses by source.
func guestAgentAddresses(info *hypervisor.GuestInfo, mac string) []string {
	if info == nil {
		return nil
	}
	var v4, v6 []string
	for _, i := range info.Interfaces {
		if !strings.EqualFold(i.MAC, mac) {
			continue
		}
		for _, a := range i.Addresses {
			ip := net.ParseIP(a.IP)
			switch {
			case ip == nil || ip.IsLinkLocalUnicast() || ip.IsLoopback():
			case a.IPv6:
				v6 = append(v6, a.IP)
			default:
				v4 = append(v4, a.IP)
			}
		}
	}
	return append(v4, v6...)
}
