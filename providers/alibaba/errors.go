package alibaba

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/alibabacloud-go/tea/tea"

	"github.com/tandemhq/tandem/providers"
)

// APIError is an OpenAPI call that the service answered with an error code.
// Its message is one line: the action, the code, the HTTP status, the
// service's message and the request id (for a support ticket).
type APIError struct {
	Action    string // e.g. UpdateServerGroupServersAttribute
	Code      string // e.g. IncorrectStatus.serverGroup
	Status    int    // HTTP status; 0 when the SDK failed before a response
	Message   string
	RequestID string
}

func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s", e.Action, e.Code)
	if e.Status != 0 {
		fmt.Fprintf(&b, " (HTTP %d)", e.Status)
	}
	if e.Message != "" {
		b.WriteString(": " + e.Message)
	}
	if e.RequestID != "" {
		b.WriteString(" [request id " + e.RequestID + "]")
	}
	return b.String()
}

// Code returns the OpenAPI error code carried by err, or "".
func Code(err error) string {
	var a *APIError
	if errors.As(err, &a) {
		return a.Code
	}
	return ""
}

// CodeDryRunOperation is the "error" with which a DryRun request that passed
// validation is answered (ALB UpdateServerGroupServersAttribute model doc).
const CodeDryRunOperation = "DryRunOperation"

// transientCodes are retried with backoff. Sources: the reference
// (shared/reference/alibaba-lb.md §1, §2), Terraform alicloud/errors.go
// (SlbIsBusy: SystemBusy, OperationBusy, ServiceIsStopping,
// BackendServer.configuring, ServiceIsConfiguring; NeedRetry: Throttling*,
// ServiceUnavailable, Rejected.Throttling) and the NLB/ALB API error tables
// (IncorrectStatus.*, Conflict.Lock, IdempotenceProcessing). Codes are
// compared case-insensitively: Terraform spells IncorrectStatus.ServerGroup
// where the API docs write IncorrectStatus.serverGroup.
var transientCodes = []string{
	"IncorrectStatus", // family: IncorrectStatus.serverGroup, .loadBalancer, .listener
	"Conflict.Lock",
	"SystemBusy",
	"OperationBusy",
	"IdempotenceProcessing",
	"BackendServer.configuring",
	"ServiceIsConfiguring",
	"ServiceIsStopping",
	"ServiceUnavailable",
	"InternalError",
	"UnknownError",
	"Throttling", // family: Throttling, Throttling.User, Throttling.Api
	"Rejected.Throttling",
	"SignatureNonceUsed", // the SDK draws a new nonce on the next attempt
}

// permanentCodes are not retried: a person has to act. Each maps a code (or
// a code family, "Family" matching "Family" and "Family.*") to the reason
// shown in status.
var permanentCodes = []struct{ code, reason string }{
	{"ResourceNotFound", "NotFound"}, // ResourceNotFound.serverGroup, .BackendServer, .listener
	{"InvalidLoadBalancerId.NotFound", "NotFound"},
	{"InvalidAction.NotFound", "NotFound"},
	{"IllegalParam", "InvalidParameter"}, // IllegalParam.%s (ALB/NLB)
	{"InvalidParameter", "InvalidParameter"},
	{"InvalidParam", "InvalidParameter"},
	{"MissingParameter", "InvalidParameter"},
	{"MissingParam", "InvalidParameter"},
	{"IdempotenceSignatureMismatch", "InvalidParameter"},
	{"Forbidden", "PermissionDenied"}, // Forbidden.NoPermission, Forbidden.RAM
	{"NoPermission", "PermissionDenied"},
	{"InvalidAccessKeyId", "InvalidCredentials"}, // InvalidAccessKeyId.NotFound, .Inactive
	{"SignatureDoesNotMatch", "InvalidCredentials"},
	{"IncompleteSignature", "InvalidCredentials"},
	{"InvalidSecurityToken", "InvalidCredentials"}, // .Expired, .Malformed, .MismatchWithAccessKey
	{"InvalidCredentials", "InvalidCredentials"},   // the SDK's own: no credential configured
	{"InvalidTimeStamp", "InvalidCredentials"},     // clock skew: fix the clock
	{"ResourceInUse", "Conflict"},
	{"OperationDenied", "Conflict"},
	{"QuotaExceeded", "QuotaExceeded"},
	{CodeDryRunOperation, "DryRun"},
}

// codeIn reports whether code is one of list or belongs to its families.
func codeIn(code, family string) bool {
	return strings.EqualFold(code, family) ||
		(len(code) > len(family) && strings.EqualFold(code[:len(family)], family) && code[len(family)] == '.')
}

// classify turns what the SDK returned into an *APIError, wrapped with
// providers.Permanent when retrying cannot fix it. Errors without an error
// code (network failures, timeouts) are returned unchanged: transient.
func classify(action string, err error) error {
	var sdk *tea.SDKError
	if !errors.As(err, &sdk) || tea.StringValue(sdk.Code) == "" {
		return err
	}
	a := &APIError{Action: action, Code: tea.StringValue(sdk.Code), Status: tea.IntValue(sdk.StatusCode)}
	// Data is the JSON error body the service sent: {"RequestId","Code","Message",...}.
	var body struct {
		RequestID  string `json:"RequestId"`
		RequestID2 string `json:"requestId"`
		Message    string `json:"Message"`
		Message2   string `json:"message"`
	}
	if json.Unmarshal([]byte(tea.StringValue(sdk.Data)), &body) == nil {
		a.RequestID = first(body.RequestID, body.RequestID2)
		a.Message = first(body.Message, body.Message2)
	}
	return Classify(a)
}

// Classify wraps a with providers.Permanent when its code says that
// retrying cannot fix it (not found, illegal parameter, permission,
// credentials); busy, throttling, 5xx and unknown codes stay transient.
func Classify(a *APIError) error {
	for _, p := range permanentCodes {
		if codeIn(a.Code, p.code) {
			if p.reason == "InvalidCredentials" {
				// The real service echoes its string-to-sign (which names the
				// AccessKey ID) in signature errors; keep it out of status.
				a.Message = ""
			}
			return providers.Permanent(p.reason, a)
		}
	}
	for _, c := range transientCodes {
		if codeIn(a.Code, c) {
			return a
		}
	}
	switch {
	case a.Status == 403:
		return providers.Permanent("PermissionDenied", a)
	case a.Status == 404:
		return providers.Permanent("NotFound", a)
	}
	// Unknown codes (and every 5xx) are treated as transient: the reconciler
	// keeps retrying with backoff and reports the error meanwhile.
	return a
}

func first(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
