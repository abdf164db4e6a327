%% @doc Distribution over TCP/IPv6 (`-proto_dist epmdx_tcp6'): OTP's
%% inet6_tcp_dist, registered with epmdx as `inet6_tcp', and chosen per peer
%% by epmdx_select (the body is epmdx_dist_wrapper.hrl).
-module(epmdx_tcp6_dist).

-define(PROTO, inet6_tcp).
-define(MOD, inet6_tcp_dist).

-include("epmdx_dist_wrapper.hrl").
