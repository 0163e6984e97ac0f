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
	"errors"
	"fmt"
	"net/http"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/streaming/pkg/httpstream"
)

// statusOf finds the API status behind err, also inside the upgrade
// failures of the remote-command executors, which do not unwrap.
func statusOf(err error) (*apierrors.StatusError, bool) {
	var upgrade *httpstream.UpgradeFailureError
	if errors.As(err, &upgrade) {
		err = upgrade.Cause
	}
	var status *apierrors.StatusError
	if errors.As(err, &status) {
		return status, true
	}
	return nil, false
}

// explain turns an API error into what a user needs to read: what could
// not be done to which VM, and why. action is a phrase such as "open the
// console of".
func explain(err error, action string, t *target) error {
	status, ok := statusOf(err)
	if !ok {
		msg := err.Error()
		// The executors prefix failures reported on the error channel.
		msg = strings.TrimPrefix(msg, "error executing remote command: ")
		return fmt.Errorf("%s VM %s: %s", action, t.Ref(), msg)
	}
	msg := serverMessage(status)
	switch status.Status().Code {
	case http.StatusNotFound:
		if status.Status().Details != nil && status.Status().Details.Kind == "virtualmachines" {
			return fmt.Errorf("VM %s not found", t.Ref())
		}
		return fmt.Errorf("%s VM %s: %s", action, t.Ref(), msg)
	case http.StatusForbidden:
		return fmt.Errorf("you are not allowed to %s VM %s: %s", action, t.Ref(), msg)
	case http.StatusUnauthorized:
		return fmt.Errorf("you are not logged in to the cluster (%s)", msg)
	case http.StatusConflict:
		return fmt.Errorf("cannot %s VM %s: %s", action, t.Ref(), msg)
	}
	return fmt.Errorf("%s VM %s: %s", action, t.Ref(), msg)
}

// serverMessage drops the generic preamble the API server puts before the
// reason of a conflict.
func serverMessage(status *apierrors.StatusError) string {
	msg := status.Status().Message
	if strings.HasPrefix(msg, "Operation cannot be fulfilled on ") {
		if i := strings.Index(msg, `": `); i >= 0 {
			return msg[i+3:]
		}
	}
	return msg
}
