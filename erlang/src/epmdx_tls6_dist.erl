%% @doc Distribution over TLS/IPv6 (`-proto_dist epmdx_tls6'): OTP's
%% inet6_tls_dist (configured as usual with `-ssl_dist_optfile' or
%% `-ssl_dist_opt'), registered with epmdx as `inet6_tls', and chosen per
%% peer by epmdx_select (the body is epmdx_dist_wrapper.hrl).
-module(epmdx_tls6_dist).

-define(PROTO, inet6_tls).
-define(MOD, inet6_tls_dist).
-define(TLS, true).
-include("epmdx_dist_wrapper.hrl").
