%% @doc Distribution over TCP/IPv4 (`-proto_dist epmdx_tcp'): OTP's
%% inet_tcp_dist, registered with epmdx as `inet_tcp', and chosen per peer
%% by epmdx_select (the body is epmdx_dist_wrapper.hrl).
-module(epmdx_tcp_dist).

-define(PROTO, inet_tcp).
-define(MOD, inet_tcp_dist).

-include("epmdx_dist_wrapper.hrl").
