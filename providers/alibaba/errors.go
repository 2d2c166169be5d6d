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

// Sources of the error table (each row names its own):
//
//   - [clb] CLB (slb-20140515) common error codes, the API reference's error
//     list: https://help.aliyun.com/en/slb/classic-load-balancer/developer-reference/api-slb-2014-05-15-errorcodes
//     and the API Error Center https://error-center.alibabacloud.com/status/product/Slb
//     (code, HTTP status, message, one row per pair).
//   - [alb] ALB (alb-20200616) error codes:
//     https://www.alibabacloud.com/help/en/slb/application-load-balancer/developer-reference/api-alb-2020-06-16-errorcodes
//   - [pop] the OpenAPI gateway's common codes (signature, AccessKey,
//     throttling), returned by every product; their statuses as the
//     gateway is known to send them are UNVERIFIED where marked.
//   - [tf] Terraform's retry lists (aliyun/terraform-provider-alicloud
//     alicloud/errors.go: SlbIsBusy, NeedRetry), where a page gives a code
//     but not whether it is temporary.
//
// A row matches a code, or a family ("Throttling" matches "Throttling" and
// "Throttling.*"; codes are compared case-insensitively because Terraform
// writes IncorrectStatus.ServerGroup where the API docs write
// IncorrectStatus.serverGroup), and an HTTP status (0: any). Rows with a
// status come first: the same code can mean a temporary failure under one
// status and a bad request under another (CLB's InvalidParameter).
type codeRule struct {
	code   string
	status int    // 0: any status
	reason string // "" retried (transient); else the permanent reason shown in status
}

// Reasons of permanent errors, as status shows them.
const (
	ReasonNotFound           = "NotFound"
	ReasonInvalidParameter   = "InvalidParameter"
	ReasonPermissionDenied   = "PermissionDenied"
	ReasonInvalidCredentials = "InvalidCredentials"
	ReasonConflict           = "Conflict"
	ReasonQuotaExceeded      = "QuotaExceeded"
	ReasonDryRun             = "DryRun"
	// ReasonNoListenerHealth: DescribeHealthStatus found no listener on the
	// port, or one without health checks (see ErrNoListenerHealth).
	ReasonNoListenerHealth = "NoListenerHealth"
)

var codeRules = []codeRule{
	// Status-specific rows first.
	{"InvalidParameter", 503, ""},                          // [clb] 503 "The request has failed due to a temporary failure of the server."
	{"InvalidParameter", 404, ReasonNotFound},              // [clb] 404 "The specified VServerGroupId does not exist."
	{"ListenerNotFound", 0, ReasonNoListenerHealth},        // [clb] 404, DescribeHealthStatus
	{"CheckedListenerNotFound", 0, ReasonNoListenerHealth}, // [clb] 404, DescribeHealthStatus

	// Busy, locked, configuring: retried.
	{"SystemBusy", 0, ""},                // [clb] 449 "The system is busy."; [alb] 400 "System is busy, please try again later."
	{"ServiceIsConfiguring", 0, ""},      // [clb] 400 "A previous configuration is pending; please try again later."
	{"VServerGroupProcessing", 0, ""},    // [clb] 400 "A previous configuration of the VServer group is pending"
	{"OperationBusy", 0, ""},             // [clb] 400 "A previous operation is pending."
	{"ProcessingSameRequest", 0, ""},     // [clb] 400 "The same request is being processed. Please try later."
	{"BackendServer.configuring", 0, ""}, // [clb] 409 "A previous configuration of the load balancer is pending"
	{"ServiceIsStopping", 0, ""},         // [clb] 409 "The specified Listener is stopping, please retry later."
	{"IncorrectStatus", 0, ""},           // [alb] 400 IncorrectStatus.serverGroup, .loadBalancer, .listener: busy with a job
	{"Conflict.Lock", 0, ""},             // [alb] 400: another change holds the resource's lock
	{"IdempotenceProcessing", 0, ""},     // [alb] 400 "The previous request is still processing."
	{"LocationServiceTimeout", 0, ""},    // [clb] DescribeVServerGroupAttribute 400 "Location service connection timeout. Please try again later."
	// Service failures: retried.
	{"ServiceUnavailable", 0, ""},  // [clb] 503 "temporary failure of the server"; [clb] also lists it with 400 and a configuration message — retried all the same (UNVERIFIED which one a weight call can get)
	{"InternalError", 0, ""},       // [clb] 500 (also 400 "backend service exception")
	{"InternalInvokeError", 0, ""}, // [clb] 500
	{"UnknownError", 0, ""},        // [pop] 400 "The request processing has failed due to some unknown error."
	// Throttling: retried. [alb] Throttling 429 "Request was denied due to
	// flow control."; [pop] Throttling.User / Throttling.Api 400 (UNVERIFIED
	// status); [tf] Rejected.Throttling.
	{"Throttling", 0, ""},
	{"Rejected.Throttling", 0, ""},
	{"SignatureNonceUsed", 0, ""}, // [pop] 400; the SDK draws a new nonce on the next attempt

	// Permanent: a person has to act.
	{"ResourceNotFound", 0, ReasonNotFound},               // [alb] 404 ResourceNotFound.serverGroup, .listener, .BackendServer
	{"InvalidLoadBalancerId.NotFound", 0, ReasonNotFound}, // [clb] 404
	{"InvalidServerId.NotFound", 0, ReasonNotFound},       // [clb] 404 (and 400 "The specified server is not found.")
	{"InvalidRegionId.NotFound", 0, ReasonNotFound},       // [clb] 404
	{"InvalidAction.NotFound", 0, ReasonNotFound},         // [pop] 404 unknown action
	{"IllegalParam", 0, ReasonInvalidParameter},           // [alb] 400 IllegalParam.%s
	{"InvalidParameter", 0, ReasonInvalidParameter},       // [clb] 400 (every other message)
	{"InvalidParam", 0, ReasonInvalidParameter},
	{"MissingParameter", 0, ReasonInvalidParameter}, // [clb] 400
	{"MissingParam", 0, ReasonInvalidParameter},
	{"TooManyBackendServers", 0, ReasonInvalidParameter},        // [clb] 400: more than 20 servers in one call
	{"InvalidWeight.Malformed", 0, ReasonInvalidParameter},      // [clb] 400
	{"IdempotenceSignatureMismatch", 0, ReasonInvalidParameter}, // [alb] 400
	{"Forbidden", 0, ReasonPermissionDenied},                    // [clb] 403 Forbidden; [alb] 403 Forbidden.NoPermission
	{"Forbbiden.SubUser", 0, ReasonPermissionDenied},            // [clb] 403, spelled so by the service
	{"NoPermission", 0, ReasonPermissionDenied},
	{"UnauthorizedRegion", 0, ReasonPermissionDenied},      // [alb] 403
	{"InvalidAccessKeyId", 0, ReasonInvalidCredentials},    // [pop] InvalidAccessKeyId.NotFound 404, .Inactive 400 (UNVERIFIED statuses)
	{"SignatureDoesNotMatch", 0, ReasonInvalidCredentials}, // [pop] 400 (UNVERIFIED status)
	{"IncompleteSignature", 0, ReasonInvalidCredentials},
	{"InvalidSecurityToken", 0, ReasonInvalidCredentials}, // [pop] .Expired, .Malformed, .MismatchWithAccessKey
	{"InvalidCredentials", 0, ReasonInvalidCredentials},   // the SDK's own: no credential configured
	{"InvalidTimeStamp", 0, ReasonInvalidCredentials},     // [pop] clock skew: fix the clock
	{"ResourceInUse", 0, ReasonConflict},
	{"OperationDenied", 0, ReasonConflict},
	{"QuotaExceeded", 0, ReasonQuotaExceeded},
	{CodeDryRunOperation, 0, ReasonDryRun}, // [alb] 400 "Request validation has been passed with DryRun flag set."
}

// ErrNoListenerHealth is what DescribeHealthStatus answering
// ListenerNotFound ("You have not created a listener for the specified port
// of the load balancer", 404) or CheckedListenerNotFound ("No
// health-checked Listener to the specified port of the Load Balancer",
// 404) means [clb]: the load balancer has no health to report for this
// binding — not that the servers are unhealthy, and not a busy or broken
// API that a retry would fix. It is permanent (not retried, so a pass is
// not held up by retries), and errors.Is(err, ErrNoListenerHealth) tells
// it apart from every other failure, so that a provider can report
// "no health for this binding" and go on with the servers it read.
var ErrNoListenerHealth = errors.New("the load balancer reports no health for this listener")

// noHealth is an *APIError that also is ErrNoListenerHealth.
type noHealth struct{ *APIError }

func (noHealth) Is(target error) bool { return target == ErrNoListenerHealth }
func (n noHealth) Unwrap() error      { return n.APIError }

// codeIn reports whether code is family or belongs to it (family.*).
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

// Classify wraps a with providers.Permanent when its code and HTTP status
// say that retrying cannot fix it (see codeRules); busy, throttling and
// temporary failures stay transient. A code no row knows is permanent
// under 403 (PermissionDenied) and 404 (NotFound), transient otherwise:
// the reconciler keeps retrying with backoff and reports the error
// meanwhile.
func Classify(a *APIError) error {
	for _, r := range codeRules {
		if (r.status != 0 && r.status != a.Status) || !codeIn(a.Code, r.code) {
			continue
		}
		switch r.reason {
		case "":
			return a
		case ReasonNoListenerHealth:
			return providers.Permanent(r.reason, noHealth{a})
		case ReasonInvalidCredentials:
			// The real service echoes its string-to-sign (which names the
			// AccessKey ID) in signature errors; keep it out of status.
			a.Message = ""
		}
		return providers.Permanent(r.reason, a)
	}
	switch a.Status {
	case 403:
		return providers.Permanent(ReasonPermissionDenied, a)
	case 404:
		return providers.Permanent(ReasonNotFound, a)
	}
	return a
}

func first(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
