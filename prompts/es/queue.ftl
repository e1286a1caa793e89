# Espera de un operador y petición de devolución de llamada.

queue-enter = Le paso con un operador. Por favor, no cuelgue.
queue-position =
    { $position ->
        [1] Usted es el siguiente.
       *[other] Usted es el número { $position } en la cola.
    } { $minutes ->
        [0] La espera es de menos de un minuto.
        [one] La espera es de un minuto, más o menos.
       *[other] La espera es de unos { $minutes } minutos.
    }
queue-callback-offer = Si prefiere que le llamemos, pulse 1.
queue-transfer-failed = Lo sentimos, la llamada no se ha podido pasar. Vuelve a estar en la cola, entre los primeros.
callback-confirmed = Gracias. Un operador le llamará a este número lo antes posible.
voicemail-prompt = Después de la señal, deje un breve mensaje con su nombre y lo que necesita. Luego pulse almohadilla, o cuelgue.
