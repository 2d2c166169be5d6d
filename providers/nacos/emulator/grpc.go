package emulator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	auto "github.com/nacos-group/nacos-sdk-go/v2/api/grpc"
	"github.com/nacos-group/nacos-sdk-go/v2/common/remote/rpc/rpc_request"
	"github.com/nacos-group/nacos-sdk-go/v2/common/remote/rpc/rpc_response"
	"github.com/nacos-group/nacos-sdk-go/v2/model"
	"google.golang.org/grpc/peer"
	"google.golang.org/protobuf/types/known/anypb"
)

// Result and error codes of the Nacos remoting protocol
// (com.alibaba.nacos.api.remote.response.ResponseCode, NacosException).
const (
	codeSuccess    = 200 // ResponseCode.SUCCESS
	codeFail       = 500 // ResponseCode.FAIL
	codeInvalid    = 400 // NacosException.INVALID_PARAM
	codeNoRight    = 403 // NacosException.NO_RIGHT
	codeNotFound   = 404 // NacosException.NOT_FOUND
	codeUnregister = 301 // NacosException.UN_REGISTER: the SDK reconnects (rpc_client.go Request)
	codeNoHandler  = 302 // NacosException.NO_HANDLER
)

// Payload types, the Java simple class names (SDK
// common/remote/rpc/rpc_request).
const (
	typeServerCheck     = "ServerCheckRequest"
	typeConnectionSetup = "ConnectionSetupRequest"
	typeHealthCheck     = "HealthCheckRequest"
	typeInstance        = "InstanceRequest"
	typeBatchInstance   = "BatchInstanceRequest"
	typeSubscribe       = "SubscribeServiceRequest"
	typeServiceQuery    = "ServiceQueryRequest"
	typeServiceList     = "ServiceListRequest"
	typeNotify          = "NotifySubscriberRequest"
)

type requestServer struct {
	auto.UnimplementedRequestServer
	e *Emulator
}

type streamServer struct {
	auto.UnimplementedBiRequestStreamServer
	e *Emulator
}

func peerAddr(ctx context.Context) string {
	if p, ok := peer.FromContext(ctx); ok {
		return p.Addr.String()
	}
	return ""
}

// RequestBiStream serves the client's stream: the first message is
// ConnectionSetupRequest, which registers the connection (SDK
// common/remote/rpc/grpc_client.go); NotifySubscriberResponse acks that
// follow are ignored. When the stream ends the connection is gone with
// everything it published.
func (s streamServer) RequestBiStream(stream auto.BiRequestStream_RequestBiStreamServer) error {
	e := s.e
	c := &conn{
		id:         peerAddr(stream.Context()),
		stream:     stream,
		published:  map[serviceKey]model.Instance{},
		subscribed: map[serviceKey]bool{},
	}
	registered := false
	defer func() {
		if registered {
			e.disconnect(c)
		}
	}()
	for {
		p, err := stream.Recv()
		if err != nil {
			return nil
		}
		if p.GetMetadata().GetType() == typeConnectionSetup && !registered {
			e.mu.Lock()
			if e.closed {
				e.mu.Unlock()
				return nil
			}
			if old := e.conns[c.id]; old != nil {
				e.mu.Unlock()
				e.disconnect(old)
				e.mu.Lock()
			}
			e.conns[c.id] = c
			e.mu.Unlock()
			registered = true
		}
	}
}

// send writes one payload on the connection's stream.
func (c *conn) send(p *auto.Payload) error {
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	return c.stream.Send(p)
}

// Request serves one unary call.
func (s requestServer) Request(ctx context.Context, p *auto.Payload) (*auto.Payload, error) {
	e := s.e
	typ := p.GetMetadata().GetType()
	body := p.GetBody().GetValue()
	e.count(typ)
	if typ == typeServerCheck {
		return respond(&rpc_response.ServerCheckResponse{Response: success(), ConnectionId: newID()}), nil
	}
	e.mu.Lock()
	c := e.conns[peerAddr(ctx)]
	e.mu.Unlock()
	if c == nil {
		// GrpcRequestAcceptor: a request on a connection that has not set up
		// its stream is refused, and the SDK reconnects (SDK rpc_client.go,
		// UN_REGISTER).
		return respond(&rpc_response.ErrorResponse{Response: failure(codeUnregister, "Connection is unregistered.")}), nil
	}
	switch typ {
	case typeHealthCheck:
		return respond(&rpc_response.HealthCheckResponse{Response: success()}), nil
	case typeInstance, typeBatchInstance, typeSubscribe, typeServiceQuery, typeServiceList:
	default:
		return respond(&rpc_response.ErrorResponse{Response: failure(codeNoHandler, "RequestHandler Not Found")}), nil
	}
	// RemoteRequestAuthFilter: naming requests need the token the SDK got
	// from the HTTP login and sends as the accessToken header (SDK
	// security/nacos_auth_client.go).
	authErr := e.checkToken(p.GetMetadata().GetHeaders()["accessToken"])
	switch typ {
	case typeInstance:
		r := &rpc_request.InstanceRequest{}
		resp := &rpc_response.InstanceResponse{}
		resp.Response = e.handle(body, r, authErr, func() error { return e.instanceRequest(c, r) })
		return respond(resp), nil
	case typeBatchInstance:
		r := &rpc_request.BatchInstanceRequest{}
		resp := &rpc_response.BatchInstanceResponse{}
		resp.Response = e.handle(body, r, authErr, func() error { return e.batchInstanceRequest(c, r) })
		return respond(resp), nil
	case typeSubscribe:
		r := &rpc_request.SubscribeServiceRequest{}
		resp := &rpc_response.SubscribeServiceResponse{}
		resp.Response = e.handle(body, r, authErr, func() error {
			resp.ServiceInfo = e.subscribe(c, r)
			return nil
		})
		return respond(resp), nil
	case typeServiceQuery:
		r := &rpc_request.ServiceQueryRequest{}
		resp := &rpc_response.QueryServiceResponse{}
		resp.Response = e.handle(body, r, authErr, func() error {
			k := newServiceKey(r.Namespace, r.GroupName, r.ServiceName)
			e.mu.Lock()
			resp.ServiceInfo = e.serviceInfo(k, r.Cluster)
			e.mu.Unlock()
			return nil
		})
		return respond(resp), nil
	default: // typeServiceList
		r := &rpc_request.ServiceListRequest{}
		resp := &rpc_response.ServiceListResponse{}
		resp.Response = e.handle(body, r, authErr, func() error {
			resp.ServiceNames, resp.Count = e.serviceList(newServiceKey(r.Namespace, r.GroupName, ""), r.PageNo, r.PageSize)
			return nil
		})
		return respond(resp), nil
	}
}

// handle decodes a request body into r and runs f, turning errors into the
// response codes Nacos uses.
func (e *Emulator) handle(body []byte, r any, authErr error, f func() error) *rpc_response.Response {
	if authErr != nil {
		// RemoteRequestAuthFilter answers with the handler's response type,
		// errorCode NO_RIGHT.
		return failure(codeNoRight, authErr.Error())
	}
	if err := json.Unmarshal(body, r); err != nil {
		return failure(codeInvalid, "invalid request body: "+err.Error())
	}
	switch err := f(); {
	case err == nil:
		return success()
	case errors.Is(err, errInvalid):
		return failure(codeInvalid, err.Error())
	case errors.Is(err, errNotFound):
		return failure(codeNotFound, err.Error())
	default:
		return failure(codeFail, err.Error())
	}
}

func (e *Emulator) instanceRequest(c *conn, r *rpc_request.InstanceRequest) error {
	k := newServiceKey(r.Namespace, r.GroupName, r.ServiceName)
	switch r.Type {
	case "registerInstance":
		return e.register(c, k, r.Instance)
	case "deregisterInstance":
		e.deregister(c, k)
		return nil
	}
	return fmt.Errorf("%w: unsupported instance request type %q", errInvalid, r.Type)
}

// batchInstanceRequest registers several instances on one connection. The
// emulator keeps one instance per service and connection (Nacos
// AbstractClient.publishers), so a batch is accepted only with one
// instance.
func (e *Emulator) batchInstanceRequest(c *conn, r *rpc_request.BatchInstanceRequest) error {
	if r.Type != "batchRegisterInstance" || len(r.Instances) != 1 {
		return fmt.Errorf("%w: the emulator supports batchRegisterInstance with one instance only", errInvalid)
	}
	return e.register(c, newServiceKey(r.Namespace, r.GroupName, r.ServiceName), r.Instances[0])
}

// subscribe adds or removes the connection as a subscriber and answers with
// the current service info (Nacos SubscribeServiceRequestHandler). A
// subscription does not create the service
// (EphemeralClientOperationServiceImpl.subscribeService uses
// getSingletonIfExist).
func (e *Emulator) subscribe(c *conn, r *rpc_request.SubscribeServiceRequest) model.Service {
	k := newServiceKey(r.Namespace, r.GroupName, r.ServiceName)
	e.mu.Lock()
	defer e.mu.Unlock()
	if r.Subscribe {
		c.subscribed[k] = true
	} else {
		delete(c.subscribed, k)
	}
	return e.serviceInfo(k, r.Clusters)
}

// serviceList lists one page of the services of a namespace and group, and
// how many there are.
func (e *Emulator) serviceList(k serviceKey, pageNo, pageSize int) ([]string, int) {
	e.mu.Lock()
	names := []string{}
	for sk := range e.services {
		if sk.namespace == k.namespace && sk.group == k.group {
			names = append(names, sk.name)
		}
	}
	e.mu.Unlock()
	slices.Sort(names)
	pageNo, pageSize = max(pageNo, 1), max(pageSize, 1)
	start := min((pageNo-1)*pageSize, len(names))
	return names[start:min(start+pageSize, len(names))], len(names)
}

// notifyPayload builds the push. The body must carry requestId: without it
// the SDK's handler dereferences a nil pointer and the client process
// crashes (SDK rpc_request Request.PutAllHeaders; seen in a test).
func notifyPayload(k serviceKey, info model.Service) *auto.Payload {
	r := &rpc_request.NotifySubscriberRequest{
		NamingRequest: &rpc_request.NamingRequest{
			Request:     &rpc_request.Request{RequestId: newID()},
			Namespace:   k.namespace,
			ServiceName: k.name,
			GroupName:   k.group,
			Module:      "naming",
		},
		ServiceInfo: info,
	}
	return payload(typeNotify, r)
}

func success() *rpc_response.Response {
	return &rpc_response.Response{ResultCode: codeSuccess, Success: true}
}

func failure(code int, msg string) *rpc_response.Response {
	return &rpc_response.Response{ResultCode: codeFail, ErrorCode: code, Message: msg}
}

func respond(r rpc_response.IResponse) *auto.Payload { return payload(r.GetResponseType(), r) }

// payload wraps a JSON body: Payload{metadata.type, body=Any{Value: JSON}}
// with an empty type URL (SDK common/remote/rpc/grpc_connection.go
// convertRequest).
func payload(typ string, body any) *auto.Payload {
	b, _ := json.Marshal(body)
	return &auto.Payload{Metadata: &auto.Metadata{Type: typ}, Body: &anypb.Any{Value: b}}
}
