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

package app

import (
	"strings"
	"testing"
)

func TestSSHArgv(t *testing.T) {
	tgt := &target{Namespace: "team-a", Name: "demo"}
	got := sshArgv("/opt/bin/kubectl-vm", []string{"--kubeconfig=/home/a b/k.conf", "--as=alice"}, tgt, "root",
		sshOptions{port: 2222, identity: "/k/id", options: []string{"StrictHostKeyChecking=no"}}, []string{"uname", "-a"})
	want := []string{"ssh",
		"-o", "ProxyCommand=/opt/bin/kubectl-vm tunnel '--kubeconfig=/home/a b/k.conf' --as=alice -n team-a demo 2222",
		"-o", "HostKeyAlias=demo.team-a.vm.vessel.dev",
		"-i", "/k/id", "-o", "StrictHostKeyChecking=no", "root@demo", "--", "uname", "-a"}
	if strings.Join(got, "\x00") != strings.Join(want, "\x00") {
		t.Errorf("sshArgv =\n%q\nwant\n%q", got, want)
	}
	if got := sshArgv("kubectl-vm", nil, tgt, "", sshOptions{port: 22}, nil); got[len(got)-1] != "demo" {
		t.Errorf("without user or command the host is last: %q", got)
	}
}
