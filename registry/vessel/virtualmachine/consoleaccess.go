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
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"

	"github.com/vessel-vm/vessel/apis/vessel"
)

// ReadOnlyReason is what a console session forced read-only tells its
// user, through the agent.
const ReadOnlyReason = "you may get but not create virtualmachines/console"

// confineInput makes a console session read-only unless its user may
// create virtualmachines/console. A WebSocket console is opened with GET,
// which RBAC checks as get; typing into the guest is a write, so it needs
// create, as Kubernetes requires for pods/exec and pods/attach over
// WebSockets. A POST (SPDY) was authorized as create already.
// It returns why it made the session read-only, or "".
func (g Guards) confineInput(ctx context.Context, name string, opts *vessel.VirtualMachineConsoleOptions) (string, error) {
	if opts.ReadOnly || g.Authorizer == nil {
		return "", nil
	}
	info, ok := genericapirequest.RequestInfoFrom(ctx)
	if !ok {
		return "", apierrors.NewInternalError(fmt.Errorf("no request info for the console of %s", name))
	}
	if info.Verb == "create" {
		return "", nil
	}
	u, ok := genericapirequest.UserFrom(ctx)
	if !ok {
		return "", apierrors.NewInternalError(fmt.Errorf("no user for the console of %s", name))
	}
	decision, _, err := g.Authorizer.Authorize(ctx, authorizer.AttributesRecord{
		User:            u,
		Verb:            "create",
		Namespace:       info.Namespace,
		APIGroup:        vessel.GroupName,
		APIVersion:      info.APIVersion,
		Resource:        "virtualmachines",
		Subresource:     "console",
		Name:            name,
		ResourceRequest: true,
	})
	if err != nil && decision != authorizer.DecisionAllow {
		return "", apierrors.NewInternalError(fmt.Errorf("check whether %s may send input to the console of %s: %w", u.GetName(), name, err))
	}
	if decision == authorizer.DecisionAllow {
		return "", nil
	}
	opts.ReadOnly, opts.Force = true, false
	return ReadOnlyReason, nil
}
