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

package virtualmachine

import (
	"context"
	"errors"
	"testing"

	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"

	"github.com/vessel-vm/vessel/apis/vessel"
)

// creators may create virtualmachines/console in team-a; everyone else
// may only get it.
func creators(names ...string) authorizer.Authorizer {
	return authorizer.AuthorizerFunc(func(_ context.Context, a authorizer.Attributes) (authorizer.Decision, string, error) {
		if a.GetVerb() != "create" || a.GetResource() != "virtualmachines" || a.GetSubresource() != "console" || a.GetNamespace() != "team-a" || a.GetName() != "demo" {
			return authorizer.DecisionNoOpinion, "", nil
		}
		for _, n := range names {
			if a.GetUser().GetName() == n {
				return authorizer.DecisionAllow, "", nil
			}
		}
		return authorizer.DecisionNoOpinion, "", nil
	})
}

func TestConsoleInputNeedsCreate(t *testing.T) {
	request := func(userName, verb string) context.Context {
		ctx := genericapirequest.WithUser(context.Background(), &user.DefaultInfo{Name: userName})
		ctx = genericapirequest.WithNamespace(ctx, "team-a")
		return genericapirequest.WithRequestInfo(ctx, &genericapirequest.RequestInfo{
			IsResourceRequest: true, Verb: verb, APIGroup: vessel.GroupName, APIVersion: "v1alpha1",
			Namespace: "team-a", Resource: "virtualmachines", Subresource: "console", Name: "demo",
		})
	}
	g := Guards{Authorizer: creators("alice")}
	for _, tc := range []struct {
		name         string
		ctx          context.Context
		opts         vessel.VirtualMachineConsoleOptions
		wantReadOnly bool
		wantReason   string
	}{
		{"an editor's WebSocket console", request("alice", "get"), vessel.VirtualMachineConsoleOptions{Force: true}, false, ""},
		{"a viewer's WebSocket console", request("carol", "get"), vessel.VirtualMachineConsoleOptions{Force: true, TailBytes: 10}, true, ReadOnlyReason},
		{"a viewer who asked for read-only", request("carol", "get"), vessel.VirtualMachineConsoleOptions{ReadOnly: true}, true, ""},
		// RBAC authorized a POST as create already.
		{"an SPDY console", request("carol", "create"), vessel.VirtualMachineConsoleOptions{}, false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := tc.opts
			reason, err := g.confineInput(tc.ctx, "demo", &opts)
			if err != nil {
				t.Fatal(err)
			}
			if opts.ReadOnly != tc.wantReadOnly || reason != tc.wantReason {
				t.Errorf("readOnly %v, reason %q; want %v, %q", opts.ReadOnly, reason, tc.wantReadOnly, tc.wantReason)
			}
			if opts.ReadOnly && opts.Force {
				t.Error("a read-only session kept force")
			}
			if opts.TailBytes != tc.opts.TailBytes {
				t.Errorf("tailBytes changed to %d", opts.TailBytes)
			}
		})
	}

	t.Run("an authorizer failure refuses the console", func(t *testing.T) {
		failing := Guards{Authorizer: authorizer.AuthorizerFunc(func(context.Context, authorizer.Attributes) (authorizer.Decision, string, error) {
			return authorizer.DecisionNoOpinion, "", errors.New("webhook down")
		})}
		opts := vessel.VirtualMachineConsoleOptions{}
		if _, err := failing.confineInput(request("alice", "get"), "demo", &opts); err == nil {
			t.Error("confineInput succeeded without an answer from the authorizer")
		}
	})
}
