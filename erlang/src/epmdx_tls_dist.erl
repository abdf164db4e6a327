%% @doc Distribution over TLS/IPv4 (`-proto_dist epmdx_tls'): OTP's
%% inet_tls_dist (configured as usual with `-ssl_dist_optfile' or
%% `-ssl_dist_opt'), registered with epmdx as `inet_tls', and chosen per
%% peer by epmdx_select.
-module(epmdx_tls_dist).

-export([childspecs/0, listen/1, listen/2, accept/1, accept_connection/5, setup/5,
         close/1, select/1, address/0, is_node_name/1]).

-define(PROTO, inet_tls).
-define(MOD, inet_tls_dist).

%% Starts ssl_dist_sup (net_kernel asks every -proto_dist module).
childspecs() ->
    ?MOD:childspecs().

listen(Name) ->
    {ok, Host} = inet:gethostname(),
    listen(Name, Host).

listen(Name, Host) ->
    epmdx_epmd:with_transport(?PROTO, fun() -> ?MOD:listen(Name, Host) end).

accept(Listen) ->
    ?MOD:accept(Listen).

accept_connection(AcceptPid, Socket, MyNode, Allowed, SetupTime) ->
    ?MOD:accept_connection(AcceptPid, Socket, MyNode, Allowed, SetupTime).

setup(Node, Type, MyNode, LongOrShortNames, SetupTime) ->
    ?MOD:setup(Node, Type, MyNode, LongOrShortNames, SetupTime).

close(Listen) ->
    ?MOD:close(Listen).

select(Node) ->
    epmdx_select:select(?PROTO, Node).

address() ->
    ?MOD:address().

is_node_name(Node) ->
    inet_tls_dist:is_node_name(Node).
