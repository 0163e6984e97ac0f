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

package isolation

import (
	"strings"
	"testing"
	"time"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
)

// A VM takes its user data from a Secret of its namespace: until the
// Secret exists, the VM says which one it waits for; once alice creates
// it, the agent reads the data through the VM's userdata subresource (it
// has no access to Secrets) and the guest runs it.
func TestUserDataFromSecret(t *testing.T) {
	e := env(t)
	const name, secret, marker = "seeded", "seeded-userdata", "VESSEL-USERDATA-FROM-SECRET"
	createAsAlice(t, e, name, "  - name: seed\n    cloudInit:\n      userDataSecretRef: {name: "+secret+"}\n")
	t.Cleanup(func() { _, _ = e.Kubectl(t, "admin", "-n", ns, "delete", "secret", secret, "--wait=false") })

	missing := "Secret " + ns + "/" + secret + ", named by spec.disks[0].cloudInit.userDataSecretRef of VM " + name + ", does not exist"
	e.WaitVM(t, ns, name, 3*time.Minute, "provisioning says the Secret is missing", func(vm *v1alpha1.VirtualMachine) bool {
		c := provisioned(vm)
		return c != nil && strings.Contains(c.Message, missing)
	})
	if out := e.MustKubectl(t, "alice", "-n", ns, "describe", "vm", name); !strings.Contains(out, missing) {
		t.Errorf("alice's kubectl describe vm does not say which Secret is missing:\n%s", out)
	}

	e.MustKubectl(t, "alice", "-n", ns, "create", "secret", "generic", secret,
		"--from-literal=userdata=#!/bin/sh\necho "+marker+" >/dev/console\n")
	vm := e.WaitPhase(t, ns, name, v1alpha1.VirtualMachineRunning)
	e.WaitLog(t, vm, marker)
	if out := e.MustKubectl(t, "alice", "-n", ns, "get", "vm", name, "-o", "yaml"); strings.Contains(out, marker) {
		t.Errorf("the VM object carries the Secret's data:\n%s", out)
	}
}
