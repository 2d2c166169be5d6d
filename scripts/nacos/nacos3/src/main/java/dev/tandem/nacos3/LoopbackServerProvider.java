package dev.tandem.nacos3;

import io.grpc.ServerBuilder;
import io.grpc.ServerCredentials;
import io.grpc.ServerProvider;
import io.grpc.netty.shaded.io.grpc.netty.NettyServerBuilder;

import java.net.InetAddress;
import java.net.InetSocketAddress;

/**
 * Makes io.grpc.ServerBuilder.forPort listen on the loopback address instead of every interface.
 *
 * <p>JRaft's gRPC transport (com.alipay.sofa:rpc-grpc-impl, GrpcRaftRpcFactory.createRpcServer)
 * builds its server with ServerBuilder.forPort, and Nacos offers no setting for the address of its
 * Raft port (main port - 1000), so without this provider a test server would be reachable from other
 * hosts. Nacos's own gRPC ports use NettyServerBuilder.forAddress directly and are bound through
 * -Dnacos.remote.grpc.listen.ip instead. Registered in META-INF/services with a priority above
 * grpc-netty-shaded's provider (5).
 */
public final class LoopbackServerProvider extends ServerProvider {

    @Override
    protected boolean isAvailable() {
        return true;
    }

    @Override
    protected int priority() {
        return 10;
    }

    @Override
    protected ServerBuilder<?> builderForPort(int port) {
        return NettyServerBuilder.forAddress(loopback(port));
    }

    @Override
    protected NewServerBuilderResult newServerBuilderForPort(int port, ServerCredentials creds) {
        return NewServerBuilderResult.serverBuilder(NettyServerBuilder.forAddress(loopback(port), creds));
    }

    private static InetSocketAddress loopback(int port) {
        return new InetSocketAddress(InetAddress.getLoopbackAddress(), port);
    }
}
