%% @doc Distribution over TLS/IPv4 (`-proto_dist epmdx_tls'): OTP's
%% inet_tls_dist (configured as usual with `-ssl_dist_optfile' or
%% `-ssl_dist_opt'), registered with epmdx as `inet_tls', and chosen per
%% peer by epmdx_select (the body is epmdx_dist_wrapper.hrl).
-module(epmdx_tls_dist).

-define(PROTO, inet_tls).
-define(MOD, inet_tls_dist).
-define(TLS, true).
-include("epmdx_dist_wrapper.hrl").
