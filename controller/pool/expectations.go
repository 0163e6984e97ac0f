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

package pool

import (
	"sync"
	"time"
)

// expectationTTL bounds how long a write the informer has not delivered is
// waited for; after it, the caches are trusted again.
const expectationTTL = 30 * time.Second

// expectations are the pool controller's writes its caches have not shown
// yet (client-go's ControllerExpectations idea, by name): without them a
// pass right after a create would not see the new member and make another.
type expectations struct {
	mu    sync.Mutex
	pools map[string]*poolExpectations
}

type poolExpectations struct {
	// made are members created, by name, with their role.
	made map[string]expected
	// deleted are members deleted.
	deleted map[string]time.Time
}

type expected struct {
	role string
	at   time.Time
}

func (e *expectations) of(pool string) *poolExpectations {
	if e.pools == nil {
		e.pools = map[string]*poolExpectations{}
	}
	p := e.pools[pool]
	if p == nil {
		p = &poolExpectations{made: map[string]expected{}, deleted: map[string]time.Time{}}
		e.pools[pool] = p
	}
	return p
}

// made records a member created or relabelled to role.
func (e *expectations) made(pool, name, role string, now time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.of(pool).made[name] = expected{role: role, at: now}
}

// deleted records a member deleted.
func (e *expectations) deleted(pool, name string, now time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.of(pool).deleted[name] = now
}

// apply corrects what the caches show: a member made is counted in its
// role until seen in it, a member deleted is not counted until gone. seen
// maps the names in the caches to their role.
func (e *expectations) apply(pool string, ms *members, seen map[string]string, now time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	p := e.of(pool)
	for name, ex := range p.made {
		role, ok := seen[name]
		switch {
		case now.Sub(ex.at) > expectationTTL || (ok && role == ex.role):
			delete(p.made, name)
		case !ok:
			m := member{name: name, placeholder: true}
			if ex.role == "warm" {
				ms.warm = append(ms.warm, m)
			} else {
				ms.replicas = append(ms.replicas, m)
			}
		default: // seen in its old role: move it
			ms.warm, ms.replicas = moveTo(ms.warm, ms.replicas, name, ex.role)
		}
	}
	for name, at := range p.deleted {
		if _, ok := seen[name]; !ok || now.Sub(at) > expectationTTL {
			delete(p.deleted, name)
			continue
		}
		ms.warm, ms.replicas = remove(ms.warm, name), remove(ms.replicas, name)
	}
}

// moveTo moves the member name into the list of role.
func moveTo(warm, replicas []member, name, role string) ([]member, []member) {
	for _, list := range [][]member{warm, replicas} {
		for _, m := range list {
			if m.name != name {
				continue
			}
			warm, replicas = remove(warm, name), remove(replicas, name)
			if role == "warm" {
				return append(warm, m), replicas
			}
			return warm, append(replicas, m)
		}
	}
	return warm, replicas
}

// forget drops a deleted pool's expectations.
func (e *expectations) forget(pool string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.pools, pool)
}
