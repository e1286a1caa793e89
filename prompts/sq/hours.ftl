# Jashtë orarit: kur hapemi përsëri, portali dhe çfarë mund të bëjë telefonuesi tani.

hours-closed = Tani operatorët nuk janë në dispozicion.
hours-next-opening =
    Hapemi përsëri { $day ->
        [today] sot
        [tomorrow] nesër
       *[other] { $weekday ->
            [1] të hënën
            [2] të martën
            [3] të mërkurën
            [4] të enjten
            [5] të premten
            [6] të shtunën
           *[7] të dielën
        }
    } në orën { $hour }{ $minute ->
        [0] {""}
        [30] { " e gjysmë" }
       *[other] { " e " }{ $minute }
    }.
hours-portal = Shumë informacion gjeni në integrazionemigranti pikë gov pikë it.
hours-options = Që t'ju telefonojmë ne, shtypni 1. Për shërbimet pranë jush, gjithmonë në dispozicion, shtypni 2.
