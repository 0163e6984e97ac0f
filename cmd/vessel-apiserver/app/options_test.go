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

	"github.com/spf13/pflag"
)

func parse(t *testing.T, args ...string) *Options {
	t.Helper()
	o := NewOptions()
	fs := pflag.NewFlagSet("vessel-apiserver", pflag.ContinueOnError)
	o.AddFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatalf("parse %v: %v", args, err)
	}
	if err := o.Complete(); err != nil {
		t.Fatalf("complete: %v", err)
	}
	return o
}

func TestDefaultsAreValid(t *testing.T) {
	o := parse(t)
	if err := o.Validate(); err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
	if !o.embeddedEtcd() || o.EtcdDataDir != "/var/lib/vessel/etcd" {
		t.Errorf("default etcd: embedded=%v dir=%q, want embedded in /var/lib/vessel/etcd", o.embeddedEtcd(), o.EtcdDataDir)
	}
	if strings.Join(o.AllowedHostPathRoots, ",") != "/var/lib/vessel/images" {
		t.Errorf("default roots = %v", o.AllowedHostPathRoots)
	}
}

func TestCompleteCleansHostPathRoots(t *testing.T) {
	o := parse(t, "--allowed-host-path-roots=/srv/images/,/data/../data")
	if got := strings.Join(o.AllowedHostPathRoots, ","); got != "/srv/images,/data" {
		t.Errorf("roots = %s, want /srv/images,/data", got)
	}
}

func TestValidateNamesTheFlag(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string // "" for valid
	}{
		{"relative root", []string{"--allowed-host-path-roots=images"}, "--allowed-host-path-roots"},
		{"agent CA alone", []string{"--agent-ca-file=/ca.crt"}, "--agent-client-cert-file is required"},
		{"agent files all set", []string{"--agent-ca-file=/ca.crt", "--agent-client-cert-file=/c.crt", "--agent-client-key-file=/c.key"}, ""},
		{"embedded etcd without a data dir", []string{"--etcd-data-dir="}, "--etcd-data-dir is required"},
		{"external etcd needs no data dir", []string{"--etcd-data-dir=", "--etcd-servers=http://127.0.0.1:2379"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := parse(t, tc.args...).Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("Validate() = %v, want nil", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("Validate() = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}
